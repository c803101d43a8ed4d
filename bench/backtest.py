"""Benchmark: full dev-set walk-forward (LightGBM, horizons 5 and 10) with training/scoring throughput.

Writes ``bench/results/backtest.json`` and ``bench/results/backtest.md``. The tear sheet of the run
goes to ``--out`` (default a temp dir). Usage::

    .venv/bin/python bench/backtest.py [--test-days 126] [--models lgbm] [--threads 2] [--symbols N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--test-days", type=int, default=126)
    ap.add_argument("--models", default="lgbm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--symbols", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "technic_bench_cache")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()

    from technic.commands.features import load_inputs
    from technic.paths import data_dir, dev_files
    from technic.research import BacktestConfig, run_backtest

    files = dev_files(data_dir())
    t0 = time.perf_counter()
    bars, fund, sec, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"),
                                     symbols=args.symbols)
    t_load = time.perf_counter() - t0
    cfg = BacktestConfig(horizons=(5, 10), models=tuple(args.models.split(",")), test_days=args.test_days,
                         n_threads=args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="technic_bench_bt_"))
    t1 = time.perf_counter()
    doc = run_backtest(bars, fund, sec, out_dir=out, cfg=cfg, cache_dir=args.cache_dir)
    t_bt = time.perf_counter() - t1
    tm = doc["_results"]["timing"]
    res = {
        "config": {"horizons": [5, 10], "models": list(cfg.models), "test_days": cfg.test_days,
                   "threads": cfg.n_threads, "max_train_rows": cfg.max_train_rows, "k_features": cfg.k_features},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m_at_end": os.getloadavg()[0]},
        "rows": doc["meta"]["n_rows"], "symbols": doc["meta"]["n_symbols"], "folds": doc["meta"]["n_folds"],
        "wall_s": {"load": round(t_load, 1), "features": doc["meta"]["features_s"],
                   "walk_forward": doc["meta"]["walk_forward_s"], "backtest_total": round(t_bt, 1),
                   "total": round(t_load + t_bt, 1)},
        "training": {"seconds": round(tm["fit_s"], 2), "rows_fitted": tm["train_rows"],
                     "rows_per_s": round(tm["train_rows"] / tm["fit_s"], 1) if tm["fit_s"] else None,
                     "note": "selection + model fits; rows = training rows x models, summed over folds"},
        "scoring": {"seconds": round(tm["predict_s"], 3), "rows_scored": tm["predict_rows"],
                    "rows_per_s": round(tm["predict_rows"] / tm["predict_s"], 1) if tm["predict_s"] else None},
        "rank_ic": {h: {n: e["metrics"].get("rank_ic_mean") for kind in ("models", "baselines")
                        for n, e in hd[kind].items()} for h, hd in doc["horizons"].items()},
        "feature_cache_hit": doc["meta"]["features_s"] < 20,
        "report": str(out / "report.html"),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "backtest.json").write_text(json.dumps(res, indent=1))
    md = ["# Walk-forward backtest benchmark", "",
          f"{res['symbols']} symbols, {res['rows']} rows, {res['folds']} folds x 2 horizons, models "
          f"{', '.join(cfg.models)}, {cfg.n_threads} threads, {os.cpu_count()} CPUs "
          f"(load average at end {res['machine']['load_avg_1m_at_end']:.1f}).", "",
          "| stage | seconds |", "| --- | --- |"]
    md += [f"| {k} | {v} |" for k, v in res["wall_s"].items()]
    md += ["", "| throughput | rows | seconds | rows/s |", "| --- | --- | --- | --- |",
           f"| training (selection + fit) | {res['training']['rows_fitted']} | {res['training']['seconds']} | "
           f"{res['training']['rows_per_s']} |",
           f"| scoring (predict) | {res['scoring']['rows_scored']} | {res['scoring']['seconds']} | "
           f"{res['scoring']['rows_per_s']} |", "", "Out-of-sample mean daily RankIC:", "",
           "| horizon | " + " | ".join(next(iter(res["rank_ic"].values()))) + " |",
           "| --- |" + " --- |" * len(next(iter(res["rank_ic"].values())))]
    for h, row in res["rank_ic"].items():
        md.append(f"| {h} | " + " | ".join("—" if v is None else f"{v:.4f}" for v in row.values()) + " |")
    (args.results / "backtest.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
