"""Training time per model on the full dev data (issue 5): one production fit of each base model.

Features of the whole dev set (cached), labels for 5 and 10 days, the per-date rank-gauss
transform, one feature selection (k=40, as in ``technic train``), then each base model is fitted
exactly as ``technic.training.fit_final`` fits it for the 5-day horizon: trees on up to
``max_train_rows`` (150,000) labelled rows, LSTM/Transformer (default preset "small", or
``--deep-preset seed``) on up to the preset's ``max_rows`` windows of 20 days with the 10-day
target as the multi-horizon head's auxiliary output, early stopping on a time-ordered inner slice.
Reports seconds, rows, iterations (trees / epochs) and each model's time as a ratio to LightGBM's
measured in the same run (timings on a shared 2-core machine are noisy; ratios less so).
Writes bench/results/training_time[_<preset>].{json,md}.

    python bench/training_time.py [--models lgbm,xgb,lstm,transformer] [--deep-preset small] [--symbols N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, write_results  # noqa: E402


def main(argv=None) -> dict:
    from technic.commands.features import load_inputs
    from technic.labels import make_labels
    from technic.models.base import make_bases
    from technic.models.deep import DEEP_NAMES
    from technic.models.ensemble import Ensemble, subsample
    from technic.models.inputs import PanelInputs
    from technic.paths import data_dir, dev_files
    from technic.research import BacktestConfig, cached_features, training_targets
    from technic.selection import FeatureSelector

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="lgbm,xgb,lstm,transformer")
    ap.add_argument("--deep-preset", default="small")
    ap.add_argument("--symbols", type=int, default=None, help="limit to N symbols (default: all)")
    ap.add_argument("--cache-dir", default=str(Path(__file__).resolve().parent / ".cache"))
    args = ap.parse_args(argv)

    files = dev_files(data_dir())
    bars, fund, secs, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"), None,
                                      args.symbols)
    cfg = BacktestConfig(horizons=(5, 10), models=tuple(args.models.split(",")), deep_preset=args.deep_preset)
    t0 = time.perf_counter()
    feats = cached_features(bars, fund, secs, cache_dir=args.cache_dir).sort_index()
    labels = make_labels(bars, cfg.label_horizons, lag=cfg.lag).reindex(feats.index)
    panel = PanelInputs(feats, factor_names=())
    prep_s = time.perf_counter() - t0
    dates = feats.index.get_level_values(0).to_numpy()
    target, aux = training_targets(labels, cfg)[5]
    tr = np.flatnonzero(np.isfinite(target))
    n_labelled = len(tr)
    tr = subsample(tr, cfg.max_train_rows, cfg.seed)
    t0 = time.perf_counter()
    sel = FeatureSelector(k=40, seed=cfg.seed, n_threads=cfg.n_threads).fit(panel.tabular_frame(tr), target[tr])
    sel_s = time.perf_counter() - t0
    feats_sel = list(sel.selected_)
    rows = [{"step": "feature selection (MI + LightGBM + Lasso + correlation, k=40; off by default)",
             "fit_s": round(sel_s, 1), "rows": len(tr)}]
    t0 = time.perf_counter()
    e = Ensemble(cfg, 5, cfg.seed, cfg.purge(5))
    e.features_ = feats_sel
    inputs = e._inputs(panel, tr)
    inputs_s = time.perf_counter() - t0
    Y = target if aux is None else np.column_stack([target, aux])
    base_s, raw = None, {}
    for name, m in make_bases(cfg, cfg.purge(5), cfg.seed).items():
        deep = name in DEEP_NAMES
        t0 = time.perf_counter()
        m.fit(inputs[name], Y[tr] if deep else target[tr], dates[tr])
        fit_s = time.perf_counter() - t0
        base_s = fit_s if name == "lgbm" else base_s
        raw[name] = fit_s
        used = min(len(tr), m.config["max_rows"]) if deep else len(tr)
        rows.append({"step": f"fit {name}" + (f" ({args.deep_preset} preset: hidden {m.config['hidden']}, "
                                              f"seq_len {m.config['seq_len']})" if deep else ""),
                     "fit_s": round(fit_s, 1), "rows": used,
                     "iterations": int(m.best_iteration_), "unit": "best epoch" if deep else "trees",
                     "epochs_run": len(m.history_) if deep else None,
                     "us_per_row": round(fit_s / used * 1e6, 1)})
        print(rows[-1], flush=True)
    for r, name in zip(rows[1:], raw):
        if base_s:
            r["x_lgbm_time"] = round(raw[name] / base_s, 2)
    meta = {"command": "python bench/training_time.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "data": f"{bars['symbol'].nunique()} symbols, {len(feats):,} feature rows, {n_labelled:,} labelled "
                    f"(h=5); features + labels + transform {prep_s:.0f} s (cache {args.cache_dir})",
            "sequence_windows_build_s": round(inputs_s, 1), "horizon": "5 (10 = auxiliary head of the deep models)",
            "target": "default deep preset trains on the full dev data within ~10 minutes on 2 cores",
            "environment": environment()}
    suffix = "" if args.deep_preset == "small" else f"_{args.deep_preset}"
    write_results("training_time" + suffix, rows, meta)
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
