"""Scoring latency of a registered ensemble for one timestamp of ~500 symbols (issue 5).

Trains LightGBM + XGBoost + an out-of-fold Ridge stack + the calibrated win-probability meta-model
(`technic.training.train_and_register`, models lgbm,xgb,stack) on a slice of the dev data into a
temporary registry, loads it with `load_scorer` (checksums verified), takes the feature matrix of
the last timestamp of the full universe, and times `score`, `contributions(top_k=5)` and `win_prob`
over repeated calls. Writes bench/results/scoring_latency.{json,md}.

    python bench/scoring_latency.py [--train-symbols 100] [--repeats 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_results  # noqa: E402


def _pcts(samples_s: list[float]) -> dict:
    a = np.asarray(samples_s) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "max_ms": round(float(a.max()), 3)}


def main(argv=None) -> dict:
    from technic.commands.features import load_inputs
    from technic.features.batch import compute_features
    from technic.models.scoring import load_scorer
    from technic.paths import data_dir, dev_files
    from technic.research import BacktestConfig
    from technic.training import train_and_register

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-symbols", type=int, default=100)
    ap.add_argument("--train-days", type=int, default=504)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args(argv)

    files = dev_files(data_dir())
    bars, fund, secs, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"), None)
    dates = np.sort(bars["date"].unique())
    syms = sorted(bars["symbol"].unique())[: args.train_symbols]
    train = bars[bars["symbol"].isin(syms) & (bars["date"] <= dates[args.train_days - 1])]
    cfg = BacktestConfig(horizons=(5, 10), models=("lgbm", "xgb", "stack"), test_days=126, k_features=30,
                         max_train_rows=60_000, n_estimators=200, early_stopping_rounds=25)
    reg = Path(tempfile.mkdtemp(prefix="technic-lat-")) / "registry"
    t0 = time.perf_counter()
    summary = train_and_register(train, fund, secs, registry_root=reg, cfg=cfg, promote_if_empty=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scorer = load_scorer(reg)
    load_s = time.perf_counter() - t0

    recent = bars[bars["date"] >= dates[-300]]
    F = compute_features(recent, fund, secs)
    last = F.xs(dates[-1], level="date")
    X = np.ascontiguousarray(last[list(scorer.feature_names)].to_numpy(np.float64))
    k = len(X)

    def timed(fn):
        fn()  # warm-up
        out = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    rows = [{"call": f"score(X) for {k} symbols, horizons {list(scorer.horizons)}", **_pcts(timed(lambda: scorer.score(X))),
             "target": "p99 < 20 ms"}]
    rows[0]["ok"] = rows[0]["p99_ms"] < 20
    rows.append({"call": f"contributions(X, top_k=5) for {k} symbols", **_pcts(timed(lambda: scorer.contributions(X, 5)))})
    if callable(getattr(scorer, "win_prob", None)):
        rows.append({"call": f"win_prob(X) for {k} symbols", **_pcts(timed(lambda: scorer.win_prob(X)))})
    meta = {"command": "python bench/scoring_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "model": f"{scorer.version}: lgbm + xgb + stack (+ win-prob meta-model) trained on {len(syms)} symbols x "
                     f"{args.train_days} days in {train_s:.0f} s; {len(scorer.feature_names)} features",
            "gate": str(summary.get("decision", summary.get("gate", ""))),
            "load_scorer_s": round(load_s, 3), "symbols_scored": k, "repeats": args.repeats}
    write_results("scoring_latency", rows, meta)
    for r in rows:
        print(r)
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
