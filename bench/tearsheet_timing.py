"""Benchmark: ``write_tearsheet`` on a realistic synthetic panel (default 500 symbols x 1000 dates,
10 models + 2 baselines, horizons 5 and 10, IC-decay labels 1/5/10/20).

Predictions carry a weak signal (daily RankIC ~0.03), 3 % NaN, one model with heavy ties
(rounded to steps of 1/3: ~25 distinct values per date) and 10 % of the symbols entering late.
Prints the wall and CPU seconds of ``write_tearsheet`` and writes
``bench/results/tearsheet_timing.{json,md}``. Usage::

    .venv/bin/python bench/tearsheet_timing.py [--symbols 500] [--dates 1000] [--models 10] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def panel(n_sym: int, n_dates: int, n_models: int, horizons=(5, 10), seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2013-02-08", periods=n_dates)
    syms = [f"S{i:04d}" for i in range(n_sym)]
    idx = pd.MultiIndex.from_product([dates, syms], names=["date", "symbol"])
    start = rng.integers(0, n_dates // 4, size=n_sym)  # late entrants
    live = np.arange(n_dates)[:, None] >= np.where(rng.random(n_sym) < 0.1, start, 0)[None, :]
    idx = idx[live.ravel()]
    n = len(idx)
    wide = pd.Series(rng.normal(0, 0.02, n), idx).unstack("symbol")

    def fwd(g):  # g-bar forward log-ish return from close t+1 (lag 1) to t+1+g, NaN at the end
        return wide[::-1].rolling(g, min_periods=g).sum()[::-1].shift(-1).stack().reindex(idx)

    decay = {g: (lambda f: f - f.groupby(level="date").transform("median"))(fwd(g)) for g in (1, 5, 10, 20)}
    horizons_out = {}
    for h in horizons:
        fr = fwd(h)
        labels = pd.DataFrame({f"fwd_ret_{h}": fr, f"excess_{h}": decay[h] if h in decay else
                               fr - fr.groupby(level="date").transform("median")})
        signal = labels[f"excess_{h}"].fillna(0.0).values
        models = {}
        for m in range(n_models):
            p = 0.03 * signal / (0.02 * np.sqrt(h)) + rng.normal(size=n)  # corr ~0.03 with excess_h
            if m == 1:
                p = np.round(p * 3) / 3  # heavily tied model
            p[rng.random(n) < 0.03] = np.nan
            models[f"model_{m}"] = {"pred": pd.Series(p, idx)}
        baselines = {"momentum_12_1": {"pred": pd.Series(0.01 * signal + rng.normal(size=n), idx)},
                     "reversal_5": {"pred": pd.Series(0.01 * signal + rng.normal(size=n), idx)}}
        horizons_out[h] = {"labels": labels, "models": models, "baselines": baselines, "decay_labels": decay}
    return {"meta": {"cost_bps": 10, "universe": "synthetic"}, "horizons": horizons_out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--dates", type=int, default=1000)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--no-write", action="store_true", help="print only, write no bench/results files")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = panel(args.symbols, args.dates, args.models)
    t_panel = time.perf_counter() - t0
    from technic.evaluation.tearsheet import write_tearsheet
    n_rows = sum(len(h["labels"]) for h in results["horizons"].values())
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        paths = write_tearsheet(d, results, "timing")
        t_write, c_write = time.perf_counter() - t0, time.process_time() - c0
        size = Path(paths["report"]).stat().st_size
    row = {"symbols": args.symbols, "dates": args.dates, "models": args.models, "horizons": 2,
           "rows_per_horizon": n_rows // 2, "panel_s": round(t_panel, 1), "write_tearsheet_s": round(t_write, 1),
           "write_tearsheet_cpu_s": round(c_write, 1),
           "report_mb": round(size / 2**20, 2)}
    print(row)
    if not args.no_write:
        from bench.common import write_results
        from bench.common import environment
        write_results("tearsheet_timing", [row], environment())


if __name__ == "__main__":
    main()
