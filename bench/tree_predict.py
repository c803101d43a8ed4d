"""LightGBM's Booster.predict vs the compiled trees (technic.models.tree_predict) for one timestamp.

Usage::

    .venv/bin/python bench/tree_predict.py [--calls 200] [--rows 505] [--features 119]

Trains one LightGBM regressor on synthetic data (``--train-rows`` x ``--features``, 3% NaN, 5% exact
zeros, a weak planted signal; the project's LightGBM defaults with ``num_leaves=31``, ``max_depth=6``,
``min_data_in_leaf=50`` so the trees are full) for 400 iterations, then for its first 100 and all
400 trees predicts ``--rows`` held-out rows (one timestamp of the universe) ``--calls`` times with:

* ``booster.predict`` with ``num_threads`` 1 and 2 (what ``LGBMModel.predict`` called before);
* the compiled kernel with its default block of 32 rows (what ``LGBMModel.predict`` calls now), and
  the two other loop orders through the same kernel: rows outer (block 1: one row through every tree)
  and trees outer (block = all rows: each tree through every row);
* ``LGBMModel.predict`` itself (array conversion + the compiled kernel).

Every variant's output is checked bitwise against ``booster.predict`` before timing. Calls are
interleaved round-robin (one call of each variant per round) so a busy machine slows all of them
alike; per variant the wall-clock p50/p99 and the thread's CPU-time p50 (``time.thread_time``: what
the call cost this thread, not the time it waited for a core). The 1-minute load average at the
start and end is in the meta: the numbers are only comparable on an idle machine.
Writes bench/results/tree_predict.json and .md. Timing is never a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, write_results  # noqa: E402
from technic.models.gbm import LGBM_DEFAULTS, LGBMModel  # noqa: E402  (sets OMP_WAIT_POLICY first)


def _data(rng, n: int, p: int):
    X = rng.standard_normal((n, p))
    X[rng.random((n, p)) < 0.05] = 0.0
    X[rng.random((n, p)) < 0.03] = np.nan
    Z = np.nan_to_num(X)
    y = 0.05 * Z[:, :10].sum(axis=1) + 0.05 * np.tanh(Z[:, 10] * Z[:, 11]) + rng.standard_normal(n)
    return X, y


def _time(variants: dict, calls: int) -> dict:
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for _ in range(calls):
        for k, f in variants.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            f()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.thread_time() - c0)
    out = {}
    for k in variants:
        w, c = np.asarray(wall[k]) * 1e3, np.asarray(cpu[k]) * 1e3
        out[k] = {"p50_ms": round(float(np.percentile(w, 50)), 3), "p99_ms": round(float(np.percentile(w, 99)), 3),
                  "cpu_p50_ms": round(float(np.percentile(c, 50)), 3)}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rows", type=int, default=505, help="rows per call (one timestamp)")
    ap.add_argument("--features", type=int, default=119)
    ap.add_argument("--train-rows", type=int, default=20000)
    ap.add_argument("--trees", default="100,400")
    args = ap.parse_args(argv)
    import lightgbm as lgb

    from technic.models.tree_predict import BLOCK, compile_booster
    load0 = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    X, y = _data(rng, args.train_rows, args.features)
    Xq, _ = _data(rng, args.rows, args.features)
    trees = [int(t) for t in args.trees.split(",")]
    params = {**LGBM_DEFAULTS, "num_leaves": 31, "max_depth": 6, "min_data_in_leaf": 50, "seed": 0,
              "num_threads": 1, "deterministic": True, "force_col_wise": True}
    t0 = time.perf_counter()
    booster = lgb.train(params, lgb.Dataset(X, y, params={"max_bin": params["max_bin"]}),
                        num_boost_round=max(trees))
    train_s = time.perf_counter() - t0
    rows, shapes = [], {}
    for k in trees:
        compiled = compile_booster(booster, k)
        model = LGBMModel(n_threads=2)
        model.booster_, model.best_iteration_, model.n_features_in_ = booster, k, args.features
        variants = {
            "booster.predict, 1 thread": lambda k=k: booster.predict(Xq, num_iteration=k, num_threads=1),
            "booster.predict, 2 threads": lambda k=k: booster.predict(Xq, num_iteration=k, num_threads=2),
            f"compiled, blocks of {BLOCK} rows (default)": lambda c=compiled: c.predict(Xq),
            "compiled, rows outer (block 1)": lambda c=compiled: c.predict(Xq, block=1),
            f"compiled, trees outer (block {args.rows})": lambda c=compiled: c.predict(Xq, block=args.rows),
            "LGBMModel.predict (compiled)": lambda m=model: m.predict(Xq),
        }
        ref = booster.predict(Xq, num_iteration=k, num_threads=1)
        equal = {name: bool(np.array_equal(f(), ref)) for name, f in variants.items()}  # also warms up
        for f in variants.values():
            f()
        timed = _time(variants, args.calls)
        base1 = timed["booster.predict, 1 thread"]["p50_ms"]
        base2 = timed["booster.predict, 2 threads"]["p50_ms"]
        for name, r in timed.items():
            rows.append({"trees": k, "variant": name, **r, "x_vs_1_thread_p50": round(base1 / r["p50_ms"], 2),
                         "x_vs_2_threads_p50": round(base2 / r["p50_ms"], 2), "bitwise_equal": equal[name]})
            print(rows[-1], flush=True)
        shapes[k] = {"depth_min": int(compiled.depth.min()), "depth_max": int(compiled.depth.max()),
                     "nodes_and_leaves": int(compiled.thr.size), "kernel_columns": int(compiled.col_feature.size)}
    meta = {"command": "python bench/tree_predict.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "data": f"synthetic: {args.train_rows} training rows x {args.features} features (3% NaN, 5% zeros), "
                    f"{args.rows} query rows per call",
            "model": {k: v for k, v in params.items() if k != "verbosity"},
            "train_s": round(train_s, 2), "trees": shapes, "calls": args.calls,
            "timing": "calls interleaved round-robin; p50/p99 wall ms; cpu_p50_ms = thread CPU time",
            "loadavg_1m_start": load0, "loadavg_1m_end": os.getloadavg()[0], **environment()}
    write_results("tree_predict", rows, meta)
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
