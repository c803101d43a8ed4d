"""Train the production model on all data up to an end date and submit it to the registry.

Steps (``train_and_register``):

1. bars up to ``end`` -> features (cached) and labels;
2. the walk-forward backtest of the SAME configuration gives the out-of-sample metrics the gate
   judges (``metrics`` = the primary horizon's, i.e. the first horizon; ``ensemble`` of the models
   when there are several) and per-fold metrics; baselines come from the same folds;
3. the final models are fitted per horizon on every labelled row (feature selection and early
   stopping inside, exactly as in one walk-forward fold);
4. artifacts (LightGBM ``.txt``, XGBoost ``.json``, ``scorer.json``) + manifest (data range,
   data hash, feature names, feature-registry hash, params, fold metrics, metrics, baselines,
   ``reference_distributions`` = per-feature deciles of the training features, for PSI drift)
   go through ``Registry.submit``: promoted if the gate passes against 12-1 momentum (and the
   incumbent), otherwise kept as rejected with the reason.
5. Optional bootstrap (demo): when nothing is promoted and ``promote_if_empty``, a gate-failed
   first model is promoted anyway with reason "bootstrap: empty registry"; the manifest's
   ``bootstrap_promotion`` key documents that policy before the decision is made.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from .errors import TechnicError
from .evaluation.tearsheet import to_jsonable
from .features.registry import registry_hash
from .labels import make_labels
from .models.gbm import MODELS
from .models.preprocess import cross_sectional_target, cross_sectional_transform
from .models.scoring import SPEC_NAME
from .research import (DEEP_NAMES, BacktestConfig, cached_features, data_hash, fit_fold_ensemble,
                       summarize_results, training_targets, walk_forward)

DECILES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def reference_distributions(features: pd.DataFrame, names: list[str]) -> dict:
    """Per feature: deciles (0..100%) of the finite training values and the missing share."""
    out = {}
    for f in names:
        v = features[f].to_numpy(np.float64)
        ok = np.isfinite(v)
        q = np.quantile(v[ok], DECILES).tolist() if ok.any() else [None] * len(DECILES)
        out[f] = {"quantiles": DECILES, "values": q, "missing_rate": float(1 - ok.mean()) if len(v) else 1.0}
    return out


def fit_final(features: pd.DataFrame, labels: pd.DataFrame, cfg: BacktestConfig, sectors: dict | None = None):
    """Fit the per-horizon models on all labelled rows; return (feature_names, spec, files).

    The bundle (``scorer.json`` + files) holds everything the Scorer needs: per horizon the base
    models (LightGBM ``.txt``, XGBoost ``.json``, LSTM/Transformer state_dict ``.pt`` + config
    JSON) with their feature columns, the Ridge stack weights, the calibrated win-probability
    meta-model, the feature list and the preprocessing. ``regime`` is recorded as null: regime
    columns are a research option (``BacktestConfig.regime``) that is not served (refused here);
    a sector-neutral training target needs nothing at serving time and is recorded as such.
    """
    if cfg.regime:
        raise TechnicError("regime features are a research-only (backtest) option: the streaming Scorer keeps "
                           "no universe-level regime state (see technic compare-variants for their value)")
    if cfg.sector_neutral and not sectors:
        raise TechnicError("sector-neutral training targets need the sector map (pass --securities)")
    features = features.sort_index()
    labels = labels.reindex(features.index)
    Xn = cross_sectional_transform(features)
    dates = features.index.get_level_values(0).to_numpy()
    targets = training_targets(labels, cfg, sectors)
    per_h = {}
    for h in cfg.horizons:
        target, aux = targets[h]
        excess = labels[f"excess_{h}"].to_numpy(np.float64)
        per_h[h] = fit_fold_ensemble(Xn, target, dates, np.arange(len(features)), cfg, h, cfg.seed + 1000, excess,
                                     aux)
    order = {n: i for i, n in enumerate(features.columns)}
    names = sorted({f for r in per_h.values() for f in r["features"]}, key=order.get)
    pos = {n: i for i, n in enumerate(names)}
    spec = {"feature_names": names, "horizons": [int(h) for h in cfg.horizons], "preprocess": "gauss",
            "models": {}, "regime": None, "training_target": "sector-neutral excess" if cfg.sector_neutral else "excess"}
    files = {}
    for h, r in per_h.items():
        feats, models = r["features"], r["models"]
        spec["models"][str(h)] = []
        for kind, m in models.items():
            entry = {"kind": kind, "columns": [pos[f] for f in feats], "features": feats}
            if kind in DEEP_NAMES:  # state_dict + config JSON; head 0 = this horizon
                prefix = f"model_h{h}_{kind}"
                files.update(m.to_files(prefix))
                entry.update(prefix=prefix, seq_len=m.seq_len, head=0, epochs=int(m.best_iteration_),
                             params=m.config)
            else:
                fname = f"model_h{h}_{kind}{MODELS[kind].suffix}"
                files[fname] = m.to_bytes()
                entry.update(file=fname, trees=int(m.best_iteration_), params=m.get_params())
            spec["models"][str(h)].append(entry)
        spec.setdefault("fit_s", {})[str(h)] = {k: round(v, 2) for k, v in r["fit_s"].items()}
        if r["stacker"] is not None:  # score = Ridge over the base predictions, in spec["models"][h] order
            spec.setdefault("stack", {})[str(h)] = {"models": list(models), **r["stacker"].to_dict()}
        if r["win_prob"] is not None:  # meta-model inputs: the columns, then the base predictions
            prefix = f"meta_h{h}"
            files.update(r["win_prob"].to_files(prefix))
            spec.setdefault("win_prob", {})[str(h)] = {"prefix": prefix, "columns": [pos[f] for f in feats],
                                                       "models": list(models)}
    files[SPEC_NAME] = json.dumps(spec, indent=1).encode()
    return names, spec, files


def train_and_register(bars, fundamentals=None, securities=None, alt=None, *, registry_root=None,
                       cfg: BacktestConfig | None = None, end=None, promote_if_empty: bool = False,
                       gate_cfg=None, cache_dir=None) -> dict:
    """Backtest, fit the final models, register and gate them; return a summary dict."""
    from .registry import GateConfig, Registry
    cfg = cfg or BacktestConfig()
    cfg.check()
    t0 = time.perf_counter()
    if end is not None:
        bars = bars[pd.to_datetime(bars["date"]) <= pd.Timestamp(end)]
        if bars.empty:
            raise TechnicError(f"no bars on or before end={end}")
    feats = cached_features(bars, fundamentals, securities, alt, cache_dir=cache_dir)
    labels = make_labels(bars, cfg.horizons)
    from .data import sector_map
    sectors = sector_map(securities) if isinstance(securities, pd.DataFrame) else securities
    results = walk_forward(feats, labels, cfg, sectors=sectors)
    summary = summarize_results(results, cfg.cost_bps)
    primary = int(cfg.horizons[0])
    cand_name = ("stack" if "stack" in cfg.models else
                 "ensemble" if len(cfg.base_models) > 1 else cfg.base_models[0])  # = what the Scorer serves
    cand = dict(summary[primary][cand_name])
    baselines = {"momentum_12_1": summary[primary]["momentum_12_1"]}
    t_final = time.perf_counter()
    names, spec, files = fit_final(feats, labels, cfg, sectors)
    t_final = time.perf_counter() - t_final
    dates = pd.to_datetime(bars["date"])
    reg = Registry(registry_root)
    was_empty = reg.promoted() is None
    manifest = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_range": {"start": str(dates.min().date()), "end": str(dates.max().date()),
                       "n_symbols": int(bars["symbol"].nunique()), "n_rows": int(len(bars))},
        "data_hash": data_hash(bars), "feature_names": names, "feature_registry_hash": registry_hash(),
        "horizons": [int(h) for h in cfg.horizons], "primary_horizon": primary, "candidate": cand_name,
        "params": to_jsonable(vars(cfg)), "models": spec["models"], "final_fit_s": round(t_final, 1),
        "final_fit_s_by_model": spec.get("fit_s"),
        "fold_metrics": to_jsonable(results["folds"]),
        "metrics_by_horizon": to_jsonable({str(h): m for h, m in summary.items()}),
        "selection_stability": {str(h): s["stability_jaccard"] for h, s in results["selection"].items()},
        "reference_distributions": reference_distributions(feats, names),
        "bootstrap_promotion": ("if the gate fails and the registry has no promoted version, this version "
                                "is promoted anyway with reason 'bootstrap: empty registry' (demo only)")
        if promote_if_empty else None,
    }
    cand, baselines = to_jsonable(cand), to_jsonable(baselines)
    version, decision = reg.submit(files, manifest, cand, baselines, gate_cfg or GateConfig())
    promoted = decision.passed
    if not decision.passed and promote_if_empty and was_empty and reg.promoted() is None:
        reg.promote(version, reason=f"bootstrap: empty registry (gate failed: {'; '.join(decision.reasons)})",
                    force=True)
        promoted = True
    return {"version": version, "gate": decision.to_dict(), "promoted": promoted, "metrics": cand,
            "baselines": baselines, "feature_names": names, "wall_s": time.perf_counter() - t0}
