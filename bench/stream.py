"""Streaming scorer: broker consume rate, end-to-end bars/s, bar->score latency, worker RSS.

Usage::

    .venv/bin/python bench/stream.py [--days 100] [--latency-days 30] [--latency-rate 1000]
                                     [--train-symbols 100] [--train-days 504] [--grace 2]
                                     [--py-spy SECONDS] [--latency-top-k 5,0] [--partitions 6]
                                     [--split-latency-workers 1,2] [--split-catchup-workers 1,2] [--skip-e2e]

Data: the dev set at $TECHNIC_DATA_DIR or <repo>/../shared/data. One quick model
(``train_quick_model``, LightGBM) is trained once on ``--train-symbols`` symbols x
``--train-days`` trading days *before* the replayed window; every symbol (~500) is replayed
over the last ``--days`` trading days (fundamentals published first, as the parity test does).

Measures, in one run against one embedded broker (noida-db; topics of each variant get their
own prefix and are deleted afterwards, so the broker's snapshot stays small):

(0) in-process baseline: ``ScoringPipeline`` driven directly (decode + validation, incremental
    features, cross-section, model, score records), no broker and no Faust; with and without
    the top-k feature contributions; plus a cProfile of it (notes of the markdown);
(a) raw aiokafka: produce rate of the bars, then a group-less ``getmany`` consumer reading the
    bars topic from the beginning to its end;
(b) end-to-end bars/s through a worker process (``technic-stream worker``):
    - catch-up: bars published *before* the worker starts; the worker replays them with a
      plain aiokafka consumer before Faust starts (rate = its own "catch-up done" count/seconds);
    - live: worker running and idle, then bars published at full speed; they go through the
      Faust agent (``take_events``); rate = bars applied / (time the health endpoint first
      shows every bar applied - publish start). Before the clock starts, one malformed bar
      (a "primer") is published and the run waits until /health counts its dead letter, so the
      Faust consumer is known to be assigned and reading;
    each with ``--top-k 5`` (default) and ``--top-k 0`` (no SHAP contributions);
(c) bar->score latency at a fixed publish rate (``publish(rate=..., window=50)``), in both modes
    with one definition (``_latency_stats``): Kafka CreateTime of each score of timestamp t (set by
    the scoring process's producer at send) minus the CreateTime of the LAST bar of t (set by the
    publisher at send), per score; the final timestamp (it closes by the grace period) is excluded.
    - one-process mode: ``technic-stream worker --no-drift`` (direct ingest), 1 partition. Each bar
      steps its symbol's state on arrival; t closes in the batch that brings the last active
      symbol's bar of t (the very first timestamp also needs one later bar);
    - split mode: ``--split-latency-workers`` per-symbol workers (each count in the list: one run
      each) + 1 scoring worker (processes), ``--partitions`` partitions. The scoring stage closes t
      when every partition's watermark passed t or the partition marked t complete (every symbol of
      its previous timestamp delivered t), else ``--grace`` after the last row once every partition
      is caught up;
    each with the SHAP top-k of ``--latency-top-k`` (default 5 and 0). Split runs also report the
    scoring worker's own close timing from its /health (``close_wall_ms`` / ``close_cpu_ms``, p50 and
    p99: wall above CPU = the process waited for a core; CPU above the quiet figure = slower cores),
    next to the same stage closing the same timestamps in this process with nothing else running
    (``quiet_close``). The p99 of a run is over its scores, which come in blocks of one timestamp
    (~505 scores sent together): the slowest 1% of T timestamps' scores are T/100 timestamps' worth,
    so with fewer than 100 timestamps (``--latency-days``) the p99 lies inside the single worst one;
(d) worker RSS (VmRSS / VmHWM of the worker process) after the catch-up replay, per 500 symbols;
(e) split-mode catch-up with 1 vs 2 per-symbol workers (``--split-catchup-workers``): every bar
    published first, then the topology starts; rate = bars of all timestamps but the last / time
    from every process answering /health to the scoring stage having scored them; their ratio;
(f) single-symbol update time before/after the compiled engine: the rows of
    ``bench/results/incremental.json`` (``bench/incremental.py`` measures both sides in one run).

``--skip-e2e`` skips the one-process throughput variants of (b) (seven worker runs).
The load average before and after the run is in the meta: the machine is shared.

Writes bench/results/stream.json and stream.md.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, environment, write_results  # noqa: E402
from stream.io.broker import free_port as _free_port  # noqa: E402
from stream.io.children import wait_http as _wait_http  # noqa: E402

TARGET_BARS_S = 10_000
TARGET_P99_MS = 50.0


# -- helpers --------------------------------------------------------------------------------
def _health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
        return orjson.loads(r.read())


def _rss(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0]) / 1024.0  # kB -> MiB
    return out


def _use_prefix(prefix: str) -> None:
    os.environ["TECHNIC_TOPIC_PREFIX"] = prefix


async def _delete_topics(boot: str, prefix: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=boot)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return True
    except Exception:  # the embedded broker may not implement DeleteTopics
        return False
    finally:
        await admin.close()


async def _consume_all(boot: str, topic: str, keep=None) -> tuple[int, float, list]:
    """Group-less getmany consumer from the beginning to the end offsets: (n, seconds, kept)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    c = AIOKafkaConsumer(bootstrap_servers=boot, enable_auto_commit=False, group_id=None,
                         auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024)
    await c.start()
    kept: list = []
    n = 0
    try:
        await c.topics()
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        t0 = time.perf_counter()
        while todo:
            batch = await c.getmany(*todo, timeout_ms=1000, max_records=20000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        n += 1
                        if keep is not None:
                            kept.append(keep(m))
            for tp in list(todo):
                if await c.position(tp) >= ends[tp]:
                    todo.discard(tp)
        dt = time.perf_counter() - t0
    finally:
        await c.stop()
    return n, dt, kept


def _publish(boot, records, **kw) -> dict:
    from stream.tools.publisher import publish
    return asyncio.run(publish(boot, records, **kw))


# -- (0) in-process baseline -----------------------------------------------------------------
def inprocess(bar_recs, fund_recs, sectors, scorer, top_k: int, profile: bool = False):
    from stream.stages.models import ModelSource
    from stream.stages.pipeline import PipelineConfig, ScoringPipeline
    p = ScoringPipeline(ModelSource(None, scorer=scorer), sectors=sectors,
                        config=PipelineConfig(grace_s=1e9, top_k=top_k))
    for i, (_, _, v) in enumerate(fund_recs):
        p.on_fundamental(v, offset=i)
    prof = cProfile.Profile() if profile else None
    n_out = 0
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    for i, (_, _, v) in enumerate(bar_recs):
        n_out += len(p.on_bar(v, "bars", 0, i))
        if i % 500 == 499:  # the worker polls once per micro-batch
            n_out += len(p.poll())
    n_out += len(p.flush())
    if prof:
        prof.disable()
    dt = time.perf_counter() - t0
    top = None
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
        top = s.getvalue()
    return {"bars": p.stats.bars_applied, "scores": p.stats.scores_out, "seconds": dt}, top


def quiet_close(bar_recs, fund_recs, sectors, scorer, top_k: int, explain: str = "inline") -> dict:
    """The split mode's scoring stage in this process, fed the per-symbol stage's rows directly (no
    broker, nothing else running): what closing a timestamp costs on quiet cores, to read the
    ``close_*`` columns of the split latency runs against."""
    from stream.io.codecs import encode
    from stream.service.warmup import warm_process
    from stream.stages.models import ModelSource
    from stream.stages.scoring import ScoringConfig, ScoringStage
    from stream.stages.symbol import SymbolStage
    sym = SymbolStage(sectors)
    for i, (_, k, v) in enumerate(fund_recs):
        sym.on_fundamental(v, offset=i, key=k)
    stage = ScoringStage(ModelSource(None, scorer=scorer), sectors,
                         ScoringConfig(grace_s=1e9, stall_s=1e9, top_k=top_k, explain=explain))
    warm_process(sectors, scorer, top_k)
    outs = []
    for i, (_, k, v) in enumerate(bar_recs):
        outs += sym.on_bar(v, offset=i, key=k)
        if i % 50 == 49:   # as a worker after each fetched batch: rows, the partition's watermark, then poll
            for o in outs + sym.watermarks([0]):
                stage.on_record(encode(o.value))
            stage.poll()
            outs = []
    for o in outs + sym.watermarks([0]):
        stage.on_record(encode(o.value))
    stage.flush()
    t = stage.close_timing()
    return {f"{name}_{q}": t[name][q] for name in ("close_wall_ms", "close_cpu_ms") for q in ("p50", "p99")}


# -- (b)/(c)/(d) one worker run ------------------------------------------------------------------
class WorkerRun:
    def __init__(self, boot, work: Path, registry: Path, secs_file, prefix: str, top_k: int, grace: float,
                 extra=()):
        self.boot, self.prefix, self.top_k = boot, prefix, top_k
        self.port = _free_port()
        self.log = work / f"{prefix.rstrip('.')}.log"
        self.cmd = [sys.executable, "-m", "stream.cli", "worker", "--bootstrap", boot, "--registry", str(registry),
                    "--web-port", str(self.port), "--app-id", f"{prefix}worker",
                    "--datadir", str(work / f"{prefix.rstrip('.')}-worker"), "--grace", str(grace),
                    "--top-k", str(top_k), "--log-text", *extra]
        if secs_file:
            self.cmd += ["--securities", str(secs_file)]
        self.proc = None

    def start(self, timeout_s=600) -> float:
        env = dict(os.environ, TECHNIC_TOPIC_PREFIX=self.prefix)
        t0 = time.perf_counter()
        from stream.io.children import spawn
        self.proc = spawn(self.cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        _wait_http(f"http://127.0.0.1:{self.port}/health", timeout_s, self.proc)
        return time.perf_counter() - t0

    def prime(self, timeout_s: float = 120.0) -> float:
        """Publish one malformed bar and wait until the worker dead-letters it: the Faust bars agent
        is then assigned and consuming (the web server answers seconds before the group join ends)."""
        from stream.io.topics_config import topic_name
        t0 = time.perf_counter()
        _publish(self.boot, [(topic_name("bars"), b"PRIMER", b"not json: bench primer")])
        deadline = t0 + timeout_s
        while time.perf_counter() < deadline:
            h = _health(self.port)
            if sum(h.get("deadletter", {}).values()) >= 1:
                return time.perf_counter() - t0
            time.sleep(0.05)
        raise TimeoutError(f"the worker did not consume the primer within {timeout_s}s")

    def catch_up_counts(self) -> dict:
        m = re.search(r"catch-up done: (\{.*?\}); model", self.log.read_text(errors="replace"))
        return ast.literal_eval(m.group(1)) if m else {}

    def wait_applied(self, n: int, timeout_s: float, every: float = 0.1, n_in: int | None = None):
        """Poll /health until every bar is handled: bars_applied >= n, or (when ``n_in`` is given)
        bars_in >= n_in with no pending timestamp (bars dead-lettered by the worker never apply);
        return (perf_counter time, health)."""
        deadline = time.perf_counter() + timeout_s
        h = None
        while time.perf_counter() < deadline:
            try:
                h = _health(self.port)
            except OSError:
                h = None
            if h is not None and (h["bars_applied"] >= n or (
                    n_in is not None and h["bars_in"] >= n_in and h["pending_timestamps"] == 0)):
                return time.perf_counter(), h
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log}")
            time.sleep(every)
        raise TimeoutError(f"worker applied fewer than {n} bars after {timeout_s}s (last health {h})")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _prepare_topics(boot, prefix, fund_recs_fn):
    from stream.io.topics_config import create_topics, topic_specs
    _use_prefix(prefix)
    create_topics(boot, topic_specs())
    recs = list(fund_recs_fn())
    if recs:
        _publish(boot, recs)


def e2e(boot, work, registry, secs_file, prefix, mode, bar_recs_fn, fund_recs_fn, n_bars, n_last, top_k,
        grace, timeout_s, py_spy: float = 0.0, extra=()) -> dict:
    _prepare_topics(boot, prefix, fund_recs_fn)
    bars = list(bar_recs_fn())
    label = " ".join(extra) or "--ingest direct --drift"
    row = {"variant": f"end-to-end, {mode} path, top_k={top_k}, {label}", "bars": n_bars}
    w = WorkerRun(boot, work, registry, secs_file, prefix, top_k, grace, extra)
    try:
        if mode == "catch-up":
            st = _publish(boot, bars)
            row["publish_s"] = st["seconds"]
            ready_s = w.start(timeout_s)
            c = w.catch_up_counts()
            h = _health(w.port)
            row["bars_applied"] = h["bars_applied"]
            row["seconds"] = c.get("seconds")
            row["bars_per_s"] = c["bars"] / c["seconds"] if c.get("seconds") else None
            row["worker_start_to_ready_s"] = round(ready_s, 2)
            _, h = w.wait_applied(n_bars, grace + 30, n_in=n_bars)
            row["rss_mib"] = _rss(w.proc.pid)
        else:
            ready_s = w.start(timeout_s)
            row["worker_start_to_ready_s"] = round(ready_s, 2)
            row["ready_to_consuming_s"] = round(w.prime(), 2)
            pub: dict = {}
            t0 = time.perf_counter()
            th = threading.Thread(target=lambda: pub.update(_publish(boot, bars)), daemon=True)
            th.start()
            spy = None
            if py_spy:
                spy = _start_py_spy(w.proc.pid, py_spy, work / f"{prefix.rstrip('.')}.pyspy.txt")
            t1, h = w.wait_applied(n_bars, timeout_s, every=0.1, n_in=n_bars + 1)
            th.join()
            row["publish_s"] = pub.get("seconds")
            row["bars_applied"] = h["bars_applied"]
            row["seconds"] = round(t1 - t0, 3)
            row["bars_per_s"] = h["bars_applied"] / (t1 - t0)
            if spy is not None:
                spy.wait(py_spy + 30)
                f = work / f"{prefix.rstrip('.')}.pyspy.txt"
                row["py_spy"] = summarize_py_spy(f) if f.exists() else "py-spy produced no file"
        row["scores_out"] = h["scores_out"]
        row["bars_not_applied"] = n_bars - h["bars_applied"]
        row["deadletter"] = h.get("deadletter")
        row["alerts"] = h.get("alerts")
        row["target"] = f">= {TARGET_BARS_S:,} bars/s"
        row["ok"] = bool(row["bars_per_s"] and row["bars_per_s"] >= TARGET_BARS_S)
        return row
    finally:
        w.stop()


def _start_py_spy(pid, seconds, out):
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        return None
    return subprocess.Popen([str(exe), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50",
                             "-f", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_py_spy(path: Path, top: int = 25) -> str:
    """py-spy raw (folded) stacks -> share of samples per leaf function and per inclusive function."""
    leaf: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, cnt = line.rpartition(" ")
        if not stack or not cnt.isdigit():
            continue
        c = int(cnt)
        total += c
        frames = [re.sub(r" \(.*?/(site-packages|main)/", " (", f) for f in stack.split(";")]
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    if not total:
        return "(no samples)"
    out = [f"{total} samples", "", "self (leaf) share:"]
    out += [f"{100 * c / total:5.1f}%  {f}" for f, c in sorted(leaf.items(), key=lambda x: -x[1])[:top]]
    out += ["", "inclusive share:"]
    out += [f"{100 * c / total:5.1f}%  {f}" for f, c in sorted(incl.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(out)


def _latency_stats(boot: str, explain: str = "inline") -> tuple[dict, dict]:
    """Bar -> score latency from the topics themselves (same definition for every topology):
    Kafka CreateTime of each score of timestamp t (stamped by the scoring process's producer at send)
    minus the CreateTime of the LAST bar of t (stamped by the publisher at send); the final timestamp
    (closed by the grace period at the end of the replay) is excluded. With deferred explanations,
    the same for the explanation records (``explain_p50_ms``, ``explain_p99_ms``)."""
    from stream.io.topics_config import topic_name

    def bar_key(m):
        if m.key == b"PRIMER":
            return None, None, None
        v = orjson.loads(m.value)
        return v["symbol"], v["ts"], m.timestamp

    def score_key(m):
        v = orjson.loads(m.value)
        return v["symbol"], v["ts"], m.timestamp

    _, _, bar_ts = asyncio.run(_consume_all(boot, topic_name("bars"), bar_key))
    _, _, scores = asyncio.run(_consume_all(boot, topic_name("scores"), score_key))
    last_bar: dict[str, int] = {}
    for _, ts, ms in bar_ts:
        if ts is not None:
            last_bar[ts] = max(last_bar.get(ts, 0), ms)
    final_ts = max(last_bar)
    lat = np.array([ms - last_bar[ts] for _, ts, ms in scores if ts != final_ts], dtype=np.float64)
    first: dict[str, int] = {}
    for _, ts, ms in scores:
        if ts != final_ts:
            first[ts] = min(first.get(ts, ms), ms)
    lat_first = np.array([first[ts] - last_bar[ts] for ts in first], dtype=np.float64)
    row = {"scores_out": len(scores),
           "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
           "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
           "first_score_p50_ms": float(np.percentile(lat_first, 50)),
           "first_score_p99_ms": float(np.percentile(lat_first, 99)),
           "target": f"p99 < {TARGET_P99_MS:g} ms", "ok": bool(np.percentile(lat, 99) < TARGET_P99_MS)}
    if explain == "deferred":
        _, _, ex = asyncio.run(_consume_all(boot, topic_name("explanations"), score_key))
        ex_lat = np.array([ms - last_bar[ts] for _, ts, ms in ex if ts != final_ts], dtype=np.float64)
        row.update(explanations_out=len(ex), explain_p50_ms=float(np.percentile(ex_lat, 50)) if ex_lat.size else None,
                   explain_p99_ms=float(np.percentile(ex_lat, 99)) if ex_lat.size else None)
    return row, {"n_latency_samples": int(lat.size), "n_timestamps": len(first)}


def _split_hops(boot: str) -> dict:
    """Split mode: where the time of each timestamp goes, from the topics (p50 / p99 over timestamps, ms).

    Per timestamp ``t`` (the final one excluded): the last bar of ``t`` (publisher CreateTime ``B``), its
    feature row (``received``: the per-symbol worker's clock when the fetch that delivered the bar
    returned; CreateTime ``R`` when the row was handed to its producer), the first score (CreateTime ``S``):
    ``hop_fetch`` = received - B (broker, fetch pacing, the batch before), ``hop_symbol`` = R - received
    (admission, ``update_ts`` of the fetched batch, row records), ``hop_scoring`` = S - R (the row's send,
    the scoring worker's fetch, decode, and closing ``t``: market, cross-section, predict)."""
    from stream.io.topics_config import topic_name

    last_bar: dict[str, tuple[int, str]] = {}
    for key in asyncio.run(_consume_all(boot, topic_name("bars"), lambda m: None if m.key == b"PRIMER" else (
            orjson.loads(m.value)["ts"], orjson.loads(m.value)["symbol"], m.timestamp)))[2]:
        if key is not None and key[2] >= last_bar.get(key[0], (-1, ""))[0]:
            last_bar[key[0]] = (key[2], key[1])

    def row_key(m):
        v = orjson.loads(m.value)
        return (v["ts"], v["symbol"], v["received"], m.timestamp) if v.get("type") == "row" else None

    rows = {(ts, sym): (recv, ms) for ts, sym, recv, ms in
            (k for k in asyncio.run(_consume_all(boot, topic_name("features"), row_key))[2] if k is not None)}
    first: dict[str, int] = {}
    for ts, ms in asyncio.run(_consume_all(boot, topic_name("scores"), lambda m: (orjson.loads(m.value)["ts"],
                                                                                  m.timestamp)))[2]:
        first[ts] = min(first.get(ts, ms), ms)
    final_ts = max(last_bar)
    hops: dict[str, list] = {"hop_fetch": [], "hop_symbol": [], "hop_scoring": []}
    for ts, (b_ms, sym) in last_bar.items():
        if ts == final_ts or ts not in first or (ts, sym) not in rows:
            continue
        recv, r_ms = rows[(ts, sym)]
        hops["hop_fetch"].append(recv * 1e3 - b_ms)
        hops["hop_symbol"].append(r_ms - recv * 1e3)
        hops["hop_scoring"].append(first[ts] - r_ms)
    return {f"{k}_p{q}_ms": round(float(np.percentile(v, q)), 1) for k, v in hops.items() if v for q in (50, 99)}


def _wait_topic(boot: str, kind: str, n: int, timeout_s: float = 120.0) -> int:
    """Wait until ``kind``'s topic holds ``n`` records (the worker counts a score before its send is
    acknowledged: stopping it earlier would lose the tail); return the count seen."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from stream.io.topics_config import topic_name

    async def count() -> int:
        c = AIOKafkaConsumer(bootstrap_servers=boot, group_id=None)
        await c.start()
        try:
            name = topic_name(kind)
            await c.topics()
            tps = [TopicPartition(name, q) for q in sorted(c.partitions_for_topic(name) or [])]
            return sum((await c.end_offsets(tps)).values()) if tps else 0
        finally:
            await c.stop()

    deadline = time.perf_counter() + timeout_s
    seen = 0
    while time.perf_counter() < deadline:
        seen = asyncio.run(count())
        if seen >= n:
            break
        time.sleep(0.2)
    return seen


def _wait_outputs(boot: str, n_scores: int, top_k: int, explain: str) -> None:
    """Wait until the worker's scores (and, deferred, their explanations) are all on their topics."""
    _wait_topic(boot, "scores", n_scores)
    if explain == "deferred" and top_k:
        _wait_topic(boot, "explanations", n_scores, timeout_s=30)


def latency(boot, work, registry, secs_file, prefix, bar_recs_fn, fund_recs_fn, n_bars, n_last, top_k, grace,
            rate, timeout_s, window: int = 50, explain: str = "inline") -> tuple[dict, dict]:
    """One-process mode: ``technic-stream worker`` (live direct ingest) at a paced publish rate."""
    _prepare_topics(boot, prefix, fund_recs_fn)
    bars = list(bar_recs_fn())
    for attempt in range(3):  # Faust's conductor sometimes crashes at start (subscribe with no topics)
        w = WorkerRun(boot, work, registry, secs_file, prefix, top_k, grace, ("--no-drift", "--explain", explain))
        try:
            w.start(timeout_s)
            w.prime()
            break
        except (OSError, RuntimeError, TimeoutError):
            w.stop()
            if attempt == 2:
                raise
    try:
        t0 = time.perf_counter()
        st = _publish(boot, bars, rate=rate, window=window)
        _, h = w.wait_applied(n_bars, timeout_s, n_in=n_bars + 1)
        wall = time.perf_counter() - t0
        rss = _rss(w.proc.pid)
        _wait_outputs(boot, _health(w.port)["scores_out"], top_k, explain)
    finally:
        w.stop()
    stats, meta = _latency_stats(boot, explain)
    row = {"variant": f"latency at {rate:,.0f} bars/s, one-process mode (worker, direct ingest), "
                      f"top_k={top_k}{_explain_label(top_k, explain)}",
           "bars": n_bars, "publish_s": st["seconds"], "seconds": round(wall, 3), **stats,
           "bars_not_applied": n_bars - h["bars_applied"], "deadletter": h.get("deadletter"), "rss_mib": rss}
    return row, {f"latency_one_process_top{top_k}{explain[0]}_{k}": v
                 for k, v in {**meta, "worker_start_retries": attempt}.items()}


def _explain_label(top_k: int, explain: str) -> str:
    return f", explanations {explain}" if top_k else ""


def _split_env(prefix: str, partitions: int) -> dict:
    return dict(os.environ, TECHNIC_TOPIC_PREFIX=prefix, TECHNIC_PARTITIONS=str(partitions))


def _split_prepare(boot, prefix, partitions, fund_recs_fn):
    os.environ["TECHNIC_PARTITIONS"] = str(partitions)
    try:
        _prepare_topics(boot, prefix, fund_recs_fn)
    finally:
        os.environ.pop("TECHNIC_PARTITIONS", None)


def _wait_scored(topo, n: int, timeout_s: float, every: float = 0.05) -> tuple[float, dict]:
    """Poll the scoring worker until it has scored ``n`` bars; (perf_counter time, its health)."""
    deadline = time.perf_counter() + timeout_s
    h = {}
    while time.perf_counter() < deadline:
        try:
            h = topo.status("scoring")
        except OSError:
            h = {}
        if h.get("bars_applied", 0) >= n:
            return time.perf_counter(), h
        for name, proc in topo.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {topo.work / (name + '.log')}")
        time.sleep(every)
    raise TimeoutError(f"scoring stage applied fewer than {n} bars after {timeout_s}s (last health {h})")


def _wait_partitions(topo, partitions: int, timeout_s: float) -> float:
    """Wait until the scoring worker has heard every input partition's watermark (the per-symbol
    workers are consuming); return the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        try:
            if topo.status("scoring").get("n_partitions", 0) >= partitions:
                return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the scoring worker saw no watermarks of {partitions} partitions in {timeout_s}s")


def split_latency(boot, work, registry, secs_file, prefix, bar_recs_fn, fund_recs_fn, n_bars, n_last, top_k,
                  grace, rate, timeout_s, n_symbol: int, partitions: int, window: int = 50,
                  explain: str = "inline", symbol_nice: int = 0) -> tuple[dict, dict]:
    """Split mode: ``n_symbol`` per-symbol workers + 1 scoring worker (processes), paced publish."""
    from stream.tools.split_run import SplitTopology
    _split_prepare(boot, prefix, partitions, fund_recs_fn)
    bars = list(bar_recs_fn())
    topo = SplitTopology(boot, registry, work / prefix.rstrip("."), _split_env(prefix, partitions), n_symbol,
                         securities=secs_file, checkpoint_s=5.0, grace_s=grace,
                         extra=["--top-k", str(top_k), "--explain", explain], symbol_nice=symbol_nice)
    topo.work.mkdir(parents=True, exist_ok=True)
    try:
        topo.start(timeout_s)
        _wait_partitions(topo, partitions, 120)
        t0 = time.perf_counter()
        st = _publish(boot, bars, rate=rate, window=window)
        _, h = _wait_scored(topo, n_bars, timeout_s)
        wall = time.perf_counter() - t0
        _wait_outputs(boot, topo.status("scoring")["scores_out"], top_k, explain)
    finally:
        topo.stop()
    stats, meta = _latency_stats(boot, explain)
    stats.update(_split_hops(boot))
    nice = f", per-symbol --nice {symbol_nice}" if symbol_nice else ""
    row = {"variant": f"latency at {rate:,.0f} bars/s, split mode ({n_symbol} per-symbol + 1 scoring worker, "
                      f"{partitions} partitions{nice}), top_k={top_k}{_explain_label(top_k, explain)}",
           "bars": n_bars, "publish_s": st["seconds"], "seconds": round(wall, 3), **stats,
           **{f"{name}_{q}": h.get(name, {}).get(q) for name in ("close_wall_ms", "close_cpu_ms") for q in ("p50", "p99")},
           "bars_not_applied": n_bars - h["bars_applied"], "deadletter": h.get("deadletter")}
    return row, {f"latency_split{n_symbol}{'n' if symbol_nice else ''}_top{top_k}{explain[0]}_{k}": v
                 for k, v in meta.items()}


def split_catch_up(boot, work, registry, secs_file, prefix, bar_recs_fn, fund_recs_fn, n_bars, n_last, top_k,
                   grace, timeout_s, n_symbol: int, partitions: int) -> dict:
    """Split mode catch-up: every bar published first, then the topology starts and works off the backlog.
    Rate = bars of every timestamp but the last (which closes only after ``grace``) / (time from every
    process answering /health to the scoring stage having scored them)."""
    from stream.tools.split_run import SplitTopology
    _split_prepare(boot, prefix, partitions, fund_recs_fn)
    st = _publish(boot, list(bar_recs_fn()))
    topo = SplitTopology(boot, registry, work / prefix.rstrip("."), _split_env(prefix, partitions), n_symbol,
                         securities=secs_file, checkpoint_s=5.0, grace_s=grace, extra=["--top-k", str(top_k)])
    topo.work.mkdir(parents=True, exist_ok=True)
    try:
        t_spawn = time.perf_counter()
        topo.start(timeout_s)
        t0 = time.perf_counter()
        t1, h = _wait_scored(topo, n_bars - n_last, timeout_s)
        _, h = _wait_scored(topo, n_bars, grace + 60)
    finally:
        topo.stop()
    n = n_bars - n_last
    return {"variant": f"catch-up, split mode, {n_symbol} per-symbol worker(s) + 1 scoring worker, "
                       f"{partitions} partitions, top_k={top_k}",
            "bars": n_bars, "publish_s": st["seconds"], "worker_start_to_ready_s": round(t0 - t_spawn, 2),
            "seconds": round(t1 - t0, 3), "bars_per_s": n / (t1 - t0), "scores_out": h.get("scores_out"),
            "bars_not_applied": n_bars - h["bars_applied"], "deadletter": h.get("deadletter")}


def incremental_rows() -> tuple[list[dict], dict]:
    """Single-symbol update time before/after the compiled engine, from ``bench/incremental.py``'s
    last results (that benchmark extracts the baseline commit and measures both sides in one run)."""
    f = RESULTS / "incremental.json"
    if not f.exists():
        return [], {"incremental": "bench/results/incremental.json missing: run python bench/incremental.py"}
    d = json.loads(f.read_text())
    rows = []
    for r in d["rows"]:
        if r["measure"].startswith(("one symbol per call", "all symbols per call (k=485): update_ts")):
            rows.append({"variant": f"bench/incremental.py: {r['measure']} (us/bar, before -> after)",
                         "before_us_per_bar": r["before"], "after_us_per_bar": r["after"],
                         "speed_up": r.get("speed-up")})
    m = d["meta"]
    return rows, {"incremental_source": f"bench/results/incremental.json ({m.get('command')}; before "
                                        f"{str(m.get('before_commit'))[:9]}, after {str(m.get('after_commit'))[:9]}, "
                                        f"measured {m.get('when')})"}


def _loadavg(la) -> str:
    return f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min, {os.cpu_count()} cpus, shared machine)"


# -- main --------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=100, help="trading days replayed in (a), (b)")
    ap.add_argument("--latency-days", type=int, default=30, help="trading days replayed in (c)")
    ap.add_argument("--latency-rate", type=float, default=1000.0, help="bars/s published in (c)")
    ap.add_argument("--train-symbols", type=int, default=100)
    ap.add_argument("--train-days", type=int, default=504)
    ap.add_argument("--grace", type=float, default=2.0, help="worker --grace")
    ap.add_argument("--timeout", type=float, default=600.0, help="per worker run")
    ap.add_argument("--py-spy", type=float, default=0.0,
                    help="record the worker with py-spy for N s during the live top_k=5 run (raw folded stacks)")
    ap.add_argument("--latency-window", type=int, default=50, help="publisher window (bars sent per burst) in (c)")
    ap.add_argument("--latency-top-k", default="5,5d,0",
                    help="SHAP top-k of the latency runs (c); a trailing d: explanations deferred (--explain deferred)")
    ap.add_argument("--partitions", type=int, default=6, help="input partitions in the split-mode runs")
    ap.add_argument("--split-latency-workers", default="1,2",
                    help="per-symbol worker counts of the split latency runs (one run each)")
    ap.add_argument("--split-nice", default="0",
                    help="per-symbol workers' --nice in the split latency runs (each value in the list: one run)")
    ap.add_argument("--split-catchup-workers", default="1,2", help="per-symbol worker counts compared in (e)")
    ap.add_argument("--latency-modes", default="one-process,split", help="topologies of the latency runs (c)")
    ap.add_argument("--skip-e2e", action="store_true", help="skip the one-process throughput variants (b)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--name", default="stream", help="results file name under bench/results (json + md)")
    args = ap.parse_args(argv)

    from stream.io.broker import EmbeddedBroker
    from stream.tools.publisher import bar_records, fundamental_records
    from technic.commands.features import load_inputs
    from technic.data import sector_map
    from technic.models.scoring import load_scorer
    from technic.training import train_quick_model
    from technic.paths import data_dir, dev_files

    load0 = os.getloadavg()
    files = dev_files(data_dir())
    t = time.perf_counter()
    bars, fund, secs, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"))
    load_s = time.perf_counter() - t
    dates = np.sort(bars["date"].unique())
    window = dates[-args.days:]
    replay = bars[bars["date"].isin(window)].reset_index(drop=True)
    lat_window = dates[-args.latency_days:]
    lat_replay = bars[bars["date"].isin(lat_window)].reset_index(drop=True)
    n_bars, n_last = len(replay), int((replay["date"] == window[-1]).sum())
    n_lat, n_lat_last = len(lat_replay), int((lat_replay["date"] == lat_window[-1]).sum())
    per_day = replay.groupby("date").size()
    train_syms = sorted(bars["symbol"].unique())[:args.train_symbols]
    lo = dates[max(0, len(dates) - args.days - args.train_days)]
    train = bars[(bars["date"] < window[0]) & (bars["date"] >= lo) & bars["symbol"].isin(train_syms)]
    sectors = sector_map(secs) if secs is not None else None

    work = Path(tempfile.mkdtemp(prefix="technic-bench-stream-"))
    registry = work / "registry"
    t = time.perf_counter()
    train_quick_model(train, fund, secs, registry_root=registry)
    train_s = time.perf_counter() - t
    scorer = load_scorer(registry)
    print(f"trained {scorer.version} in {train_s:.0f}s; replay {n_bars:,} bars, {replay['symbol'].nunique()} symbols",
          flush=True)

    rows: list[dict] = []
    notes: dict = {}
    # (0) in-process baseline (topic names irrelevant here)
    _use_prefix("bench.inproc.")
    bar_list = list(bar_records(replay))
    fund_list = list(fundamental_records(fund))
    base = {}
    for k in (5, 0):
        r, _ = inprocess(bar_list, fund_list, sectors, scorer, k)
        base[k] = r["bars"] / r["seconds"]
        rows.append({"variant": f"in-process ScoringPipeline (no broker, no Faust), top_k={k}", "bars": r["bars"],
                     "seconds": round(r["seconds"], 3), "bars_per_s": base[k], "scores_out": r["scores"]})
        print(rows[-1], flush=True)
    _, prof = inprocess(bar_list[: min(len(bar_list), 20 * 505)], fund_list, sectors, scorer, 5, profile=True)
    profiles = {"inprocess_top_k5_cprofile": prof}
    del bar_list

    broker = EmbeddedBroker(work / "broker").start()
    boot = broker.bootstrap
    deleted = []
    try:
        # (a) raw produce/consume
        prefix = "bench.raw."
        from stream.io.topics_config import create_topics, topic_name, topic_specs
        _use_prefix(prefix)
        create_topics(boot, topic_specs())
        recs = list(bar_records(replay))
        st = _publish(boot, recs)
        rows.append({"variant": "raw aiokafka produce (publisher, acks=all, idempotent)", "bars": st["sent"],
                     "seconds": st["seconds"], "bars_per_s": st["sent"] / st["seconds"]})
        n, dt, _ = asyncio.run(_consume_all(boot, topic_name("bars")))
        raw_consume = n / dt
        rows.append({"variant": "raw aiokafka consume (group-less getmany, 20k max_records)", "bars": n,
                     "seconds": round(dt, 3), "bars_per_s": raw_consume})
        print(rows[-2:], flush=True)
        deleted.append(asyncio.run(_delete_topics(boot, prefix)))

        def fund_fn():
            return fundamental_records(fund)

        # (b) end to end
        # worker variants measured in this one run: drift monitoring (the online layer) on/off,
        # SHAP contributions on/off, direct vs Faust-agent ingest
        combos = [("catch-up", 5, ()), ("catch-up", 5, ("--no-drift",)), ("catch-up", 0, ("--no-drift",)),
                  ("live", 5, ()), ("live", 5, ("--no-drift",)), ("live", 0, ("--no-drift",)),
                  ("live", 5, ("--ingest", "faust"))]
        for i, (mode, k, extra) in enumerate([] if args.skip_e2e else combos):
            prefix = f"bench.{mode.replace('-', '')}{k}v{i}."
            spy = args.py_spy if (mode == "live" and k == 5 and not extra) else 0.0
            try:
                row = e2e(boot, work, registry, files.get("securities"), prefix, mode,
                          lambda: bar_records(replay), fund_fn, n_bars, n_last, k, args.grace, args.timeout,
                          py_spy=spy, extra=extra)
            except (TimeoutError, RuntimeError) as e:
                row = {"variant": f"end-to-end, {mode} path, top_k={k}, {' '.join(extra)}", "error": str(e)[:300]}
            row["vs_in_process"] = row["bars_per_s"] / base[k] if row.get("bars_per_s") else None
            if "py_spy" in row:
                profiles["py_spy_worker_live_top_k5"] = row.pop("py_spy")
            rows.append(row)
            print(row, flush=True)
            deleted.append(asyncio.run(_delete_topics(boot, prefix)))
        # (c) latency, one-process mode and split mode, same definition (_latency_stats)
        lat_runs = []
        for spec in [x for x in args.latency_top_k.split(",") if x]:
            k, ex = int(spec.rstrip("d")), ("deferred" if spec.endswith("d") else "inline")
            modes = args.latency_modes.split(",")
            lat_runs += [("one-process", f"bench.latency{spec}.", lambda pf, k=k, ex=ex: latency(
                boot, work, registry, files.get("securities"), pf, lambda: bar_records(lat_replay), fund_fn, n_lat,
                n_lat_last, k, args.grace, args.latency_rate, args.timeout, window=args.latency_window, explain=ex))
                ] if "one-process" in modes else []
            lat_runs += [("split", f"bench.latsplit{spec}w{n}n{nc}.", lambda pf, k=k, ex=ex, n=n, nc=nc: split_latency(
                boot, work, registry, files.get("securities"), pf, lambda: bar_records(lat_replay), fund_fn,
                n_lat, n_lat_last, k, args.grace, args.latency_rate, args.timeout, n, args.partitions,
                window=args.latency_window, explain=ex, symbol_nice=nc))
                for n in [int(x) for x in args.split_latency_workers.split(",") if x and "split" in modes]
                for nc in [int(x) for x in args.split_nice.split(",") if x]]
        if "split" in args.latency_modes.split(","):   # what a close costs with nothing else running
            fund_list = list(fundamental_records(fund))
            for spec in dict.fromkeys(x for x in args.latency_top_k.split(",") if x):
                k, ex = int(spec.rstrip("d")), ("deferred" if spec.endswith("d") else "inline")
                rows.append({"variant": f"split scoring stage in this process, quiet cores (close only), "
                                        f"top_k={k}{_explain_label(k, ex)}", "bars": n_lat,
                             **quiet_close(bar_records(lat_replay), fund_list, sectors, scorer, k, ex)})
                print(rows[-1], flush=True)
        for name, prefix, run in lat_runs:
            try:
                row, lat_meta = run(prefix)
            except (OSError, RuntimeError, TimeoutError) as e:
                row, lat_meta = {"variant": f"latency, {name} mode", "error": str(e)[:300]}, {}
            rows.append(row)
            notes.update(lat_meta)
            print(row, flush=True)
            deleted.append(asyncio.run(_delete_topics(boot, prefix)))
        # (e) split-mode catch-up with 1 vs 2 (...) per-symbol workers
        catch = {}
        for n_sym in [int(x) for x in args.split_catchup_workers.split(",") if x]:
            prefix = f"bench.splitcatch{n_sym}."
            try:
                row = split_catch_up(boot, work, registry, files.get("securities"), prefix,
                                     lambda: bar_records(replay), fund_fn, n_bars, n_last, 5, args.grace,
                                     args.timeout, n_sym, args.partitions)
                catch[n_sym] = row["bars_per_s"]
            except (OSError, RuntimeError, TimeoutError) as e:
                row = {"variant": f"catch-up, split mode, {n_sym} per-symbol worker(s)", "error": str(e)[:300]}
            rows.append(row)
            print(row, flush=True)
            deleted.append(asyncio.run(_delete_topics(boot, prefix)))
        if len(catch) >= 2:
            lo_n, hi_n = min(catch), max(catch)
            rows.append({"variant": f"catch-up, split mode: {hi_n} vs {lo_n} per-symbol workers (same run)",
                         "ratio": catch[hi_n] / catch[lo_n]})
    finally:
        broker.stop()

    # (f) single-symbol update time before/after the compiled engine (bench/incremental.py's results)
    inc_rows, inc_meta = incremental_rows()
    rows += inc_rows
    notes.update(inc_meta)
    # (d) RSS per 500 symbols (catch-up run, top_k=5)
    n_sym = int(replay["symbol"].nunique())
    for r in rows:
        if isinstance(r.get("rss_mib"), dict):
            rss = r.pop("rss_mib")
            r["rss_mib"] = round(rss["VmRSS"], 1)
            r["rss_hwm_mib"] = round(rss["VmHWM"], 1)
            r["rss_mib_per_500_symbols"] = round(rss["VmRSS"] * 500 / n_sym, 1)
    for r in rows:
        for k in ("bars_per_s", "vs_in_process"):
            if isinstance(r.get(k), float):
                r[k] = round(r[k], 3 if k == "vs_in_process" else 0)

    meta = {"command": "python bench/stream.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "replay": f"{n_bars:,} bars = {len(window)} trading days x {n_sym} symbols "
                      f"({str(window[0])[:10]} .. {str(window[-1])[:10]}); bars per day min {per_day.min()} "
                      f"max {per_day.max()}",
            "latency_replay": f"{n_lat:,} bars = {len(lat_window)} trading days at {args.latency_rate:,.0f} bars/s",
            "model": f"{scorer.version}: train_quick_model (LightGBM) on {len(train_syms)} symbols x "
                     f"{args.train_days} trading days before the window; {len(scorer.feature_names)} features, "
                     f"horizons {list(scorer.horizons)}; trained in {train_s:.0f} s",
            "worker": f"technic-stream worker --grace {args.grace} (separate process), one embedded noida-db "
                      f"broker, 1 partition per topic, fundamentals published before the bars",
            "split": f"--role symbol --member i/N workers + 1 --role scoring worker (processes, --no-drift, checkpoint "
                     f"5 s), {args.partitions} partitions per symbol-keyed topic, same broker",
            "latency_definition": "Kafka CreateTime of each score of timestamp t (scoring process's producer, at send) "
                                  "minus CreateTime of the last bar of t (publisher, at send); per score; the final "
                                  "timestamp (closed by the grace period) excluded; both latency runs --no-drift, "
                                  f"publisher window {args.latency_window} bars",
            "load_before": _loadavg(load0), "load_after": _loadavg(os.getloadavg()),
            "topics_deleted_between_variants": all(deleted),
            "load_s": round(load_s, 2), "raw_consume_bars_per_s": round(raw_consume),
            "targets": f">= {TARGET_BARS_S:,} bars/s end to end; p99 < {TARGET_P99_MS:g} ms at 1,000 bars/s",
            **notes, **environment()}
    jp, mp = write_results(args.name, rows, meta)
    # long texts (profiles) go to the JSON under "profiles" and to the markdown as code blocks
    d = json.loads(jp.read_text())
    d["profiles"] = profiles
    jp.write_text(json.dumps(d, indent=2, default=str) + "\n")
    with open(mp, "a") as f:
        f.write("\n## cProfile of the in-process pipeline (top_k=5, first 20 days), by tottime\n\n```\n"
                + "\n".join(prof.strip().splitlines()[:45]) + "\n```\n")
    if "py_spy_worker_live_top_k5" in profiles:
        with open(mp, "a") as f:
            f.write(f"\n## py-spy of the worker process during the live run (top_k=5, {args.py_spy:g} s, 50 Hz)\n\n"
                    "```\n" + profiles["py_spy_worker_live_top_k5"] + "\n```\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work dir kept: {work}")
    print(f"wrote {jp} and {mp}")
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
