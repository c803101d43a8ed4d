"""`technic-stream parity`: every streamed score against the batch path.

Replays the last ``days`` trading days of ``symbols`` symbols (with their
fundamentals and sectors) through the real broker and a real worker process,
collects every score from the scores topic, and compares it with the batch
path on the same bars: ``compute_features`` then the same model, one call per
timestamp. The model comes from ``registry`` (its promoted version) or is a
quick model trained on the two years *before* the replayed window and
registered in a temporary registry.

Report: ``n_expected`` (bars replayed = scores the batch path produces),
``n_scores`` (distinct score keys received), ``n_missing``, and for keys received more than once:
``n_reemitted`` (extra copies identical to the first in every field but ``emit_time``: a
restarted scoring worker scoring again the timestamps it had closed after its last snapshot;
harmless, consumers de-duplicate on symbol|ts|model_version), ``n_duplicate`` (extra copies that
differ from the first: must be 0) and ``n_conflicting`` (keys with such a copy), ``max_abs_diff``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


CHAOS = {"kill": 0, "kill-scoring": "scoring"}   # --chaos mode -> the worker SIGKILLed and restarted
JOIN = "join"   # --group: the last per-symbol worker joins the group mid-replay (a rebalance)


def expected_scores(bars, fund, secs, scorer) -> dict[tuple[str, str], dict[int, float]]:
    """Batch path: features for the whole panel, then the model one timestamp at a time
    (``score_panel``: with the per-symbol normalized history when the bundle has sequence models)."""
    from technic.features.batch import compute_features
    from technic.models.scoring import score_panel
    from stream.stages.pipeline import ts_string
    S = score_panel(compute_features(bars, fund, secs), scorer)
    ns = S.index.get_level_values("date").to_numpy().astype("datetime64[ns]").astype(np.int64)
    syms = S.index.get_level_values("symbol").to_numpy()
    cols = {h: S[f"score_{h}"].to_numpy() for h in scorer.horizons}
    ts_cache: dict = {}
    return {(syms[i], ts_cache.setdefault(ns[i], ts_string(int(ns[i])))): {h: float(cols[h][i]) for h in cols}
            for i in range(len(S))}


def compare_scores(expected: dict, received: list[dict]) -> dict:
    got: dict = {}
    first: dict = {}
    dup = same = 0
    conflicting: set = set()
    for v in received:
        k = (v["symbol"], v["ts"])
        val = {int(h[:-1]): x for h, x in v["scores"].items()}
        whole = {f: x for f, x in v.items() if f != "emit_time"}
        if k in got:
            if whole == first[k]:
                same += 1
            else:
                dup += 1
                conflicting.add(k)
        else:
            got[k], first[k] = val, whole
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    diffs = [abs(got[k][h] - e[h]) for k, e in expected.items() if k in got for h in e]
    return {"n_expected": len(expected), "n_scores": len(got), "n_missing": len(missing),
            "n_unexpected": len(extra), "n_duplicate": dup, "n_reemitted": same,
            "n_conflicting": len(conflicting),
            "max_abs_diff": float(max(diffs, default=0.0)), "missing_examples": [list(k) for k in missing[:5]]}


def run_stream_parity(days: int = 60, symbols: int = 100, data=None, registry=None, bootstrap=None,
                      timeout_s: float = 300.0, workdir: Path | None = None, symbol_workers: int = 0,
                      partitions: int = 6, chaos: str | None = None, rate: float | None = None,
                      group: str | None = None) -> dict:
    """One-process mode (``symbol_workers=0``: one worker process) or the split mode
    (``symbol_workers`` per-symbol worker processes + 1 scoring worker, ``partitions`` input
    partitions, static assignment). ``chaos="kill"``: per-symbol worker 0 is SIGKILLed mid-replay
    (after its first snapshot) and restarted; ``chaos="kill-scoring"``: the scoring worker likewise
    (it restores its snapshot and reads the features topic from that snapshot's offset); the report
    adds ``restarts`` and ``restore_s``."""
    from technic.commands.features import load_inputs
    from technic.data import sector_map
    from technic.models.scoring import load_scorer
    from technic.paths import data_dir, require_dev_files
    from technic.training import train_quick_model

    from stream.io.broker import EmbeddedBroker, free_port, resolve_bootstrap
    from stream.io.children import spawn, stop_child, wait_http
    from stream.tools.publisher import bar_records, fundamental_records, publish
    from stream.tools.tail import tail
    from stream.io.topics_config import create_topics, topic_specs

    files = require_dev_files(Path(data) if data else data_dir())
    bars, fund, secs, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"), None, symbols)
    dates = np.sort(bars["date"].unique())
    window = dates[-days:]
    replay = bars[bars["date"].isin(window)].reset_index(drop=True)
    own = workdir is None
    work = Path(workdir or tempfile.mkdtemp(prefix="technic-parity-"))
    t0 = time.time()
    if registry is None:
        registry = work / "registry"
        train = bars[(bars["date"] < window[0]) & (bars["date"] >= dates[max(0, len(dates) - days - 504)])]
        train_quick_model(train, fund, secs, registry_root=registry)
    scorer = load_scorer(registry)
    t_train = time.time() - t0

    prefix = f"parity{os.getpid()}{int(time.time())}."
    env = dict(os.environ, TECHNIC_TOPIC_PREFIX=prefix)
    os.environ["TECHNIC_TOPIC_PREFIX"] = prefix
    broker = None
    boot = resolve_bootstrap(bootstrap)
    worker = topo = None
    split = symbol_workers > 0
    if split:  # the workers create missing topics with TECHNIC_PARTITIONS; it must match
        env["TECHNIC_PARTITIONS"] = str(partitions)
    try:
        if boot is None:
            broker = EmbeddedBroker(work / "broker").start()
            boot = broker.bootstrap
        create_topics(boot, topic_specs(partitions=partitions if split else None))
        port = free_port()
        secs_file = files.get("securities")
        cmd = [sys.executable, "-m", "stream.cli", "worker", "--bootstrap", boot, "--registry", str(registry),
               "--web-port", str(port), "--app-id", f"{prefix}worker", "--datadir", str(work / "worker"),
               "--grace", "2"]
        if secs_file:
            cmd += ["--securities", str(secs_file)]
        # reference data first: the worker's catch-up reads it before any bar (Kafka has no
        # ordering across topics, so fundamentals racing the bars they apply to would differ)
        asyncio.run(publish(boot, list(fundamental_records(fund))))
        chaos_rep: dict = {}
        if split:
            from .split_run import SplitTopology
            topo = SplitTopology(boot, registry, work, env, symbol_workers, securities=secs_file,
                                 checkpoint_s=0.5, scoring_checkpoint_s=0.5,
                                 group=f"{prefix}symbol" if group else None)
            topo.start(n_symbol=symbol_workers - 1 if chaos == JOIN else None)
        else:
            worker = spawn(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "worker.log", "wb"))
            wait_http(f"http://127.0.0.1:{port}/health", 120, worker)
        t1 = time.time()
        recs = list(bar_records(replay))
        if chaos in CHAOS and split:
            chaos_rep = _publish_with_kill(boot, recs, topo, rate or 1500.0, CHAOS[chaos])
        elif chaos == JOIN and split:
            chaos_rep = _publish_with_join(boot, recs, topo, rate or 1500.0)
        else:
            asyncio.run(publish(boot, recs, rate=rate, window=max(50, int(rate // 10)) if rate else 5000))
        received: list[dict] = []
        expected = expected_scores(replay, fund, sector_map(secs) if secs is not None else None, scorer)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            received.clear()
            asyncio.run(tail(boot, "scores", from_beginning=True, idle_s=3, out=lambda s: None,
                             raw=received.append))
            if len({(v["symbol"], v["ts"]) for v in received}) >= len(expected):
                break
            time.sleep(1)
        t_stream = time.time() - t1
        rep = compare_scores(expected, received)
        rep.update({"days": int(len(window)), "symbols": int(replay["symbol"].nunique()),
                    "model_version": scorer.version, "seconds_train": round(t_train, 1),
                    "seconds_stream": round(t_stream, 1), "bootstrap_embedded": broker is not None,
                    "mode": f"split ({symbol_workers} per-symbol + 1 scoring workers, {partitions} partitions)"
                    if split else "one-process", **chaos_rep})
        return rep
    finally:
        stop_child(worker)
        if topo is not None:
            topo.stop()
        if broker is not None:
            broker.stop()
        os.environ.pop("TECHNIC_TOPIC_PREFIX", None)
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _publish_with_join(boot, recs, topo, rate: float) -> dict:
    """Group mode: publish at ``rate`` in a thread; once the running per-symbol workers have written a
    snapshot and applied a third of the bars, start the last worker: the group rebalances, the others
    write the snapshots of the partitions they give up and the newcomer restores them."""
    import threading

    from .publisher import publish
    window = max(50, int(rate // 10))
    th = threading.Thread(target=lambda: asyncio.run(publish(boot, recs, rate=rate, window=window)), daemon=True)
    th.start()
    first = [f"symbol{i}" for i in range(topo.n - 1)]
    while True:
        st = [topo.status(n) for n in first]
        if all(s.get("snapshots_written", 0) >= 1 for s in st) and sum(s.get("bars_applied", 0) for s in st) > len(recs) // 3:
            break
        if not th.is_alive():
            raise RuntimeError("the replay ended before the first members wrote snapshots: lower --rate")
        time.sleep(0.1)
    joined_after = sum(s.get("bars_applied", 0) for s in st)
    topo.restart(topo.n - 1)
    th.join()
    last = topo.status(f"symbol{topo.n - 1}")
    return {"chaos": "join", "joined": f"symbol{topo.n - 1}", "joined_after_bars": joined_after,
            "partitions_after_join": {n: topo.status(n)["partitions"] for n in first + [f"symbol{topo.n - 1}"]},
            "restored_from": last.get("restored_from")}


def _publish_with_kill(boot, recs, topo, rate: float, target=0) -> dict:
    """Publish at ``rate`` bars/s in a thread; once worker ``target`` (per-symbol worker 0, or
    "scoring") has written a snapshot and applied bars (the scoring worker: a third of the replay,
    so that its restored market state and open timestamps are not trivial), SIGKILL it and start
    it again while the replay goes on."""
    import threading

    from .publisher import publish
    done = threading.Event()
    window = max(50, int(rate // 10))  # the rate is kept per window of records
    th = threading.Thread(target=lambda: (asyncio.run(publish(boot, recs, rate=rate, window=window)), done.set()),
                          daemon=True)
    th.start()
    name = topo.name_of(target)
    min_bars = len(recs) // 3 if target == "scoring" else 0
    killed_at = None
    while True:   # the scoring worker lags the publisher: it may still be mid-replay once publishing ends
        finished = done.is_set()
        try:
            st = topo.status(name)
        except OSError:  # busy with a batch: ask again
            continue
        if st.get("snapshots_written", 0) >= 1 and st.get("bars_applied", 0) > min_bars:
            killed_at = st.get("bars_applied")
            break
        if finished and (target != "scoring" or st.get("bars_applied", 0) >= len(recs)):
            break
        time.sleep(0.1)
    if killed_at is None or killed_at >= len(recs):
        raise RuntimeError(f"the replay ended before {name} wrote a snapshot: lower --rate")
    topo.kill(target)
    time.sleep(1.0)  # the rest of the topology goes on without it
    topo.restart(target)
    th.join()
    return {"chaos": next(k for k, v in CHAOS.items() if v == target), "killed": name, "restarts": topo.restarts,
            "restore_s": topo.restore_s, "killed_after_bars": killed_at,
            "restored_from": topo.status(name).get("restored_from")}
