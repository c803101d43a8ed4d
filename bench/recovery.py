"""Recovery of the per-symbol stage: restore from the latest snapshot vs history length.

Usage::

    .venv/bin/python bench/recovery.py [--symbols 100] [--tail 20]

For a history of 1 year and of 4 years of daily bars (``--symbols`` symbols of the dev data in one
partition, with their fundamentals), a per-symbol stage (``stream.stages.symbol``) consumes the
history; a snapshot (``stream.stages.checkpoint``) is taken ``--tail`` trading days before the end
(the checkpoint interval), the stage is lost, and a new one recovers: decode the snapshot record
and restore every symbol (``restore_s``), then replay only the bars after the snapshot's offset
(``replay_s``). For contrast, the pre-snapshot recovery: replay the whole history (``full_replay_s``).

Exactness with a truncated bars topic: the recovered stage is fed ONLY the bars after the snapshot
(what a topic truncated by retention still holds); its feature rows for those bars and its final
state bytes must equal those of the stage that never stopped (``max_abs_diff``, ``state_equal``).

In process: the snapshot topic read through the broker is not included here; `technic-stream
parity --symbol-workers 3 --chaos kill` reports that end to end (``restore_s``).
Writes bench/results/recovery.json and recovery.md. Timing is never a test.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, write_results  # noqa: E402


def _feed(stage, recs, start=0):
    rows = {}
    for i, (_, _, v) in enumerate(recs):
        for o in stage.on_bar(v, partition=0, offset=start + i):
            if o.kind == "features":
                rows[(o.value["symbol"], o.value["ts"])] = np.asarray(o.value["row"], dtype=np.float64)
    return rows


def run(symbols: int, tail: int) -> tuple[list[dict], dict]:
    from stream.io.codecs import encode
    from stream.stages.checkpoint import decode_snapshot, restore, snapshot
    from stream.stages.symbol import SymbolStage
    from stream.tools.publisher import bar_records, fundamental_records
    from technic.commands.features import load_inputs
    from technic.data import sector_map
    from technic.paths import data_dir, dev_files

    files = dev_files(data_dir())
    bars, fund, secs, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"), None, symbols)
    sectors = sector_map(secs) if secs is not None else None
    dates = np.sort(bars["date"].unique())
    fund_recs = list(fundamental_records(fund))
    rows_out = []
    for years in (1, 4):
        hist = bars[bars["date"].isin(dates[-252 * years:])].reset_index(drop=True)
        recs = list(bar_records(hist))
        hdates = np.sort(hist["date"].unique())
        cut = int((hist["date"] < hdates[-tail]).sum())   # bars before the snapshot (publisher order: by date)

        def fresh():
            s = SymbolStage(sectors, n_partitions=1)
            for i, (_, _, v) in enumerate(fund_recs):
                s.on_fundamental(v, partition=0, offset=i)
            return s

        live = fresh()
        t0 = time.perf_counter()
        _feed(live, recs[:cut])
        head_s = time.perf_counter() - t0
        blob = encode(snapshot(live, 0, {"bars": cut, "fundamentals": len(fund_recs), "alt": 0}).value)
        rows_live = _feed(live, recs[cut:], cut)
        full_replay_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        rec = SymbolStage(sectors, n_partitions=1)
        offs = restore(rec, decode_snapshot(blob))
        restore_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        rows_rec = _feed(rec, recs[offs["bars"]:], offs["bars"])   # the truncated topic: only what came after
        replay_s = time.perf_counter() - t1
        diffs = [np.nanmax(np.abs(rows_rec[k] - rows_live[k]), initial=0.0) for k in rows_live]
        nan_same = all(np.array_equal(np.isnan(rows_rec[k]), np.isnan(rows_live[k])) for k in rows_live)
        state_equal = all(rec.engine.get_state(s) == live.engine.get_state(s) for s in live.engine.slots
                          if s in rec.engine.slots)
        rows_out.append({
            "history": f"{years} year(s)", "bars_in_history": len(recs), "bars_after_snapshot": len(recs) - cut,
            "snapshot_kib": round(len(blob) / 1024, 1), "restore_s": round(restore_s, 4),
            "replay_s": round(replay_s, 4), "recovery_s": round(restore_s + replay_s, 4),
            "full_replay_s": round(full_replay_s, 3), "rows_compared": len(rows_live),
            "max_abs_diff": float(max(diffs, default=0.0)), "nan_pattern_equal": nan_same,
            "state_equal": state_equal, "restore_from_truncated_topic": set(rows_rec) == set(rows_live)})
    ratio = rows_out[1]["recovery_s"] / rows_out[0]["recovery_s"]
    meta = {"symbols": symbols, "snapshot_tail_days": tail, "ratio_recovery_4y_over_1y": round(ratio, 3),
            "target_ratio": 1.5, "command": f"python bench/recovery.py --symbols {symbols} --tail {tail}",
            "notes": "in process (no broker read); one partition holding all symbols; daily bars",
            **environment()}
    return rows_out, meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--tail", type=int, default=20, help="trading days between the snapshot and the crash")
    a = ap.parse_args()
    rows, meta = run(a.symbols, a.tail)
    jp, mp = write_results("recovery", rows, meta)
    print(mp.read_text())


if __name__ == "__main__":
    main()
