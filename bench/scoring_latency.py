"""Scoring latency of a registered ensemble for one timestamp of ~500 symbols (issue 5).

Trains the ensemble bundle -- LightGBM + XGBoost + LSTM + Transformer + an out-of-fold Ridge
stack + the calibrated win-probability meta-model (`technic.training.train_and_register`, default
models lgbm,xgb,lstm,transformer,stack) -- on a slice of the dev data into a temporary registry,
loads it with `load_scorer` (checksums verified), takes the feature matrix and the normalized
per-symbol history of the last timestamp of the full universe, and times the one-call
`predict(X, history, top_k=5)` (per-horizon scores + win probability + top-5 contributions, what
the stream worker calls), `score`, `contributions` and `win_prob` over repeated calls. The deep
models' training rows are capped (`--deep-rows`) only to keep the bench short: latency depends on
the network sizes (`--deep-preset`), not on the rows they were fitted on.
Writes bench/results/scoring_latency[_<preset>].{json,md}.

    python bench/scoring_latency.py [--models lgbm,xgb,lstm,transformer,stack] [--deep-preset small|seed]
    python bench/scoring_latency.py --models lgbm,xgb,stack --name scoring_latency_trees
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
    from technic.models.deep import DEEP_NAMES
    from technic.models.scoring import history_from_panel, load_scorer
    from technic.paths import data_dir, dev_files
    from technic.research import BacktestConfig
    from technic.training import train_and_register

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-symbols", type=int, default=100)
    ap.add_argument("--train-days", type=int, default=504)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--models", default="lgbm", help="base models (default: the served default, LightGBM in the "
                    "factor blend); e.g. lgbm,xgb,lstm,transformer,stack for the full ensemble")
    ap.add_argument("--deep-preset", default="small")
    ap.add_argument("--deep-rows", type=int, default=20_000)
    ap.add_argument("--test-days", type=int, default=126, help="walk-forward test block of the training run")
    ap.add_argument("--threads", default="1,2", help="scorer thread counts to time (LightGBM/XGBoost/torch)")
    ap.add_argument("--name", default=None, help="results name (default scoring_latency[_<preset>])")
    args = ap.parse_args(argv)

    files = dev_files(data_dir())
    bars, fund, secs, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"), None)
    dates = np.sort(bars["date"].unique())
    syms = sorted(bars["symbol"].unique())[: args.train_symbols]
    train = bars[bars["symbol"].isin(syms) & (bars["date"] <= dates[args.train_days - 1])]
    cfg = BacktestConfig(horizons=(5, 10), models=tuple(args.models.split(",")), test_days=args.test_days,
                         max_train_rows=60_000, stack_folds=2, null=False, deep_preset=args.deep_preset,
                         deep_params={"max_rows": args.deep_rows, "epochs": 3})
    reg = Path(tempfile.mkdtemp(prefix="technic-lat-")) / "registry"
    t0 = time.perf_counter()
    summary = train_and_register(train, fund, secs, registry_root=reg, cfg=cfg, promote_if_empty=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scorer = load_scorer(reg)
    load_s = time.perf_counter() - t0
    version = scorer.version

    recent = bars[bars["date"] >= dates[-300]]
    F = compute_features(recent, fund, secs)
    last = F.xs(dates[-1], level="date")
    X = np.ascontiguousarray(last[list(scorer.feature_names)].to_numpy(np.float64))
    from technic.data import sector_map
    from technic.features.batch import sector_codes
    G = sector_codes(last.index, sector_map(secs))
    k = len(X)
    H = None
    if scorer.seq_len:
        rows = np.flatnonzero(F.index.get_level_values(0) == dates[-1])
        H = history_from_panel(F, scorer.feature_names, scorer.seq_len, rows)

    def timed(fn):
        fn()  # warm-up
        out = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    from technic.models.scoring import scorer_from_version
    from technic.registry import Registry
    rows = []
    for n_threads in [int(x) for x in args.threads.split(",")]:
        scorer = scorer_from_version(Registry(reg).load(version), n_threads)
        part = [{"call": f"predict(X, history, top_k=5, groups) for {k} symbols: served scores "
                         f"{list(scorer.horizons)} ({scorer.served[scorer.horizons[0]]}) + win prob + top-5 contributions",
                 **_pcts(timed(lambda: scorer.predict(X, H, 5, G))), "target": "p99 < 20 ms"},
                {"call": "predict(X, history, top_k=0, groups): scores + win prob, no contributions",
                 **_pcts(timed(lambda: scorer.predict(X, H, 0, G)))},
                {"call": f"score(X, history, groups) for {k} symbols", **_pcts(timed(lambda: scorer.score(X, H, G)))}]
        part[0]["ok"] = part[0]["p99_ms"] < 20
        part.append({"call": f"contributions(X, top_k=5, groups) for {k} symbols",
                     **_pcts(timed(lambda: scorer.contributions(X, 5, groups=G, history=H)))})
        inp = scorer.inputs(X, H, G)
        ens = scorer.ensembles[scorer.horizons[0]]
        part.append({"call": f"model inputs of {k} symbols: per-date rank-gauss + {len(scorer.factor_names)} factor scores",
                     **_pcts(timed(lambda: scorer.inputs(X, H, G)))})
        rows_all = np.arange(k)
        for name, m in ens.models_.items():
            if name in DEEP_NAMES:
                S = inp.sequences(rows_all, ens.features_, m.seq_len)
                part.append({"call": f"one base model: {name}.predict ({k} windows)", **_pcts(timed(lambda: m.predict(S)))})
            else:
                Zc = inp.tabular(rows_all, ens.features_)
                part.append({"call": f"one base model: {name}.predict ({k} rows)", **_pcts(timed(lambda: m.predict(Zc)))})
        rows += [{"threads": n_threads, **r} for r in part]
    meta = {"command": "python bench/scoring_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "model": f"{scorer!r}: {args.models} (+ win-prob meta-model), deep preset {args.deep_preset}, trained on "
                     f"{len(syms)} symbols x {args.train_days} days in {train_s:.0f} s; {len(scorer.feature_names)} "
                     f"features; seq_len {scorer.seq_len}",
            "gate": str(summary.get("decision", summary.get("gate", ""))),
            "load_scorer_s": round(load_s, 3), "symbols_scored": k, "repeats": args.repeats}
    from bench.common import environment
    meta["environment"] = environment()
    write_results(args.name or ("scoring_latency" + ("" if args.deep_preset == "small" else f"_{args.deep_preset}")),
                  rows, meta)
    for r in rows:
        print(r)
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
