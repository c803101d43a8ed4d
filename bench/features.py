"""Feature evaluators: batch wall time, incremental cost per bar, speed-up vs recomputation, state size.

Usage::

    .venv/bin/python bench/features.py [--symbols N] [--timestamps 300] [--single-symbols 10] [--scratch 20]

Data: the dev set at $TECHNIC_DATA_DIR or <repo>/../shared/data (bars cleaned with
``clean_bars``, fundamentals with the default 90-day lag, securities for sectors).
Measures in one run:

(a) ``compute_features`` wall time on the whole set (target < 30 s);
(b) incremental cost per bar for the full registry: vectorized (all symbols of a
    timestamp per call, ``FeatureEngine.process_timestamp``) and single-symbol (one
    symbol per call: ``update_ts`` + ``cross_section`` with one symbol), over the
    ``--timestamps`` timestamps that follow a warm-up of ``max lookback`` timestamps;
(c) the recompute-from-scratch baseline: for a sample of bars, ``compute_features``
    on the symbol's last ``max lookback`` bars, keeping the last row; ratio to (b)
    (target >= 50x);
(d) serialized state bytes per symbol (``FeatureEngine.get_state``).
Writes bench/results/features.json and features.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, write_results  # noqa: E402
from technic.data import clean_bars, load_bars, load_fundamentals, load_securities  # noqa: E402
from technic.data.securities import sector_map  # noqa: E402
from technic.features import registry as R  # noqa: E402
from technic.features.batch import compute_features  # noqa: E402
from technic.features.incremental import FeatureEngine  # noqa: E402
from technic.features.parity import feed_side_inputs  # noqa: E402
from technic.paths import data_dir, dev_files  # noqa: E402


def _by_date(bars):
    dates = bars["date"].to_numpy()
    cut = np.flatnonzero(dates[1:] != dates[:-1]) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, len(bars)]
    return dates, list(zip(starts, ends))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=None, help="first N symbols (default: all)")
    ap.add_argument("--timestamps", type=int, default=300, help="timed timestamps for (b)")
    ap.add_argument("--single-symbols", type=int, default=10, help="symbols timed one per call in (b)")
    ap.add_argument("--scratch", type=int, default=20, help="bars sampled for the recompute baseline (c)")
    args = ap.parse_args(argv)

    files = dev_files(data_dir())
    t = time.perf_counter()
    bars = load_bars(files["bars"], symbols=args.symbols)
    bars, _ = clean_bars(bars)
    bars = bars.sort_values(["date", "symbol"], kind="mergesort").reset_index(drop=True)
    fund = load_fundamentals(files["fundamentals"])
    secs = load_securities(files["securities"])
    sectors = sector_map(secs)
    load_s = time.perf_counter() - t
    n_sym = bars["symbol"].nunique()
    lookback = max(d["lookback"] for d in R.describe())
    print(f"data: {len(bars):,} rows, {n_sym} symbols, loaded in {load_s:.1f}s; max lookback {lookback}")
    rows = []

    # (a) batch ---------------------------------------------------------------
    t = time.perf_counter()
    feats = compute_features(bars, fund, secs)
    batch_s = time.perf_counter() - t
    print(f"(a) compute_features: {batch_s:.2f}s for {feats.shape[0]:,} x {feats.shape[1]}")
    rows.append({"measure": "batch compute_features (full set)", "value": round(batch_s, 3), "unit": "s",
                 "target": "< 30 s", "ok": batch_s < 30})
    del feats

    dates, slices = _by_date(bars)
    cols = {f: bars[f].to_numpy(np.float64) for f in R.BAR_FIELDS}
    syms = bars["symbol"].to_numpy(dtype=object)
    n_ts = min(args.timestamps, len(slices) - lookback)
    warm, timed = slices[:lookback], slices[lookback:lookback + n_ts]

    # (b1) vectorized: all symbols of a timestamp per call ---------------------
    eng = FeatureEngine(sectors=sectors, capacity=n_sym)
    feed_side_inputs(eng, fund)
    for a, z in warm:
        eng.process_timestamp(dates[a], list(syms[a:z]), {f: v[a:z] for f, v in cols.items()})
    n_bars = 0
    t = time.perf_counter()
    for a, z in timed:
        eng.process_timestamp(dates[a], list(syms[a:z]), {f: v[a:z] for f, v in cols.items()})
        n_bars += z - a
    vec_s = time.perf_counter() - t
    vec_us = vec_s / n_bars * 1e6
    print(f"(b) vectorized: {vec_us:.1f} us/bar ({n_bars:,} bars, {len(timed)} timestamps, "
          f"{vec_s / len(timed) * 1e3:.1f} ms/timestamp)")
    rows.append({"measure": "incremental, vectorized (process_timestamp, all symbols)", "value": round(vec_us, 2),
                 "unit": "us/bar", "target": "", "ok": ""})
    rows.append({"measure": "incremental, vectorized, per timestamp", "value": round(vec_s / len(timed) * 1e3, 2),
                 "unit": "ms/timestamp", "target": "", "ok": ""})

    # (d) state bytes -----------------------------------------------------------
    sizes = [eng.state_nbytes(s) for s in eng.slots]
    print(f"(d) state: {np.mean(sizes):,.0f} bytes/symbol (max {max(sizes):,})")
    rows.append({"measure": "state bytes per symbol (get_state)", "value": int(max(sizes)), "unit": "bytes",
                 "target": "< 200 KB", "ok": max(sizes) < 200_000})
    del eng

    # (b2) single symbol per call ------------------------------------------------
    pick = sorted(set(syms))[: args.single_symbols]
    one = FeatureEngine(sectors=sectors, capacity=len(pick))
    feed_side_inputs(one, fund[fund["symbol"].isin(pick)])
    mask = np.isin(syms, pick)
    for a, z in warm:
        m = mask[a:z]
        if m.any():
            one.process_timestamp(dates[a], list(syms[a:z][m]), {f: v[a:z][m] for f, v in cols.items()})
    calls = []
    for a, z in timed:
        for i in range(a, z):
            if mask[i]:
                calls.append((dates[i], syms[i], {f: v[i:i + 1] for f, v in cols.items()}))
    t = time.perf_counter()
    for d, s, b in calls:
        out = one.update_ts(d, [s], b)
        one.cross_section([s], out)
    single_s = time.perf_counter() - t
    single_us = single_s / len(calls) * 1e6
    print(f"(b) single-symbol: {single_us:.1f} us/bar ({len(calls):,} calls)")
    rows.append({"measure": "incremental, single symbol per call (update_ts + cross_section)",
                 "value": round(single_us, 1), "unit": "us/bar", "target": "", "ok": ""})

    # (c) recompute from scratch over the window for each new bar ----------------
    rng = np.random.default_rng(0)
    by_sym = {s: g for s, g in bars.groupby("symbol", sort=False)}
    cand = [(s, k) for s, g in by_sym.items() for k in range(lookback, len(g))]
    sample = [cand[i] for i in rng.choice(len(cand), size=min(args.scratch, len(cand)), replace=False)]
    compute_features(by_sym[sample[0][0]].iloc[:lookback], fund[fund["symbol"] == sample[0][0]], secs)  # warm
    t = time.perf_counter()
    for s, k in sample:
        win = by_sym[s].iloc[k - lookback + 1:k + 1]
        last = compute_features(win, fund[fund["symbol"] == s], secs).iloc[-1]
    scratch_s = time.perf_counter() - t
    scratch_us = scratch_s / len(sample) * 1e6
    r_single, r_vec = scratch_us / single_us, scratch_us / vec_us
    print(f"(c) recompute from scratch: {scratch_us:,.0f} us/bar ({len(sample)} bars, window {lookback}); "
          f"speed-up {r_single:,.0f}x (single-symbol), {r_vec:,.0f}x (vectorized)")
    rows.append({"measure": f"recompute from scratch ({lookback}-bar window, compute_features, last row)",
                 "value": round(scratch_us, 0), "unit": "us/bar", "target": "", "ok": ""})
    rows.append({"measure": "speed-up: scratch / incremental single-symbol", "value": round(r_single, 1),
                 "unit": "x", "target": ">= 50x", "ok": r_single >= 50})
    rows.append({"measure": "speed-up: scratch / incremental vectorized", "value": round(r_vec, 1),
                 "unit": "x", "target": ">= 50x", "ok": r_vec >= 50})
    assert last is not None

    meta = {"command": "python bench/features.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
            "rows": len(bars), "symbols": n_sym, "features": len(R.FEATURE_NAMES), "max_lookback": lookback,
            "load_s": round(load_s, 2), "timed_timestamps": len(timed), "single_symbol_calls": len(calls),
            "scratch_sample": len(sample), **environment()}
    jp, mp = write_results("features", rows, meta)
    print(f"wrote {jp} and {mp}")
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
