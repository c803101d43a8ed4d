"""Train the production model on all data up to an end date and submit it to the registry.

Steps (``train_and_register``):

1. bars up to ``end`` -> features (cached) and lagged labels;
2. the walk-forward backtest of the SAME configuration (``research.walk_forward``) gives the
   out-of-sample metrics the gate judges: the served model's at the primary (first) horizon,
   against 12-1 momentum and 5-day reversal on the same folds (and the incumbent);
3. the production ``Ensemble`` of every horizon is fitted on every labelled row of the universe
   (``fit_final``), exactly as in one walk-forward fold;
4. artifacts + manifest (data range, hash, feature names, registry hash, params, fold metrics,
   metrics, baselines, null model, ``reference_distributions`` for PSI drift) go through
   ``Registry.submit``: promoted if the gate passes, otherwise kept as rejected with the reason.
5. ``force_promote`` (``technic train --force-promote``): a gate-failed version is promoted anyway,
   with the reason recorded; ``promote_if_empty`` (the demo): only when nothing is promoted yet.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd

from .errors import TechnicError
from .evaluation import metrics as M
from .evaluation.tearsheet import to_jsonable
from .factors import factor_inputs
from .features.registry import registry_hash
from .labels import make_labels
from .models.ensemble import Ensemble
from .models.inputs import PanelInputs
from .models.scoring import BUNDLE_FORMAT, SPEC_NAME
from .research import BacktestConfig, cached_features, data_hash, group_codes, training_targets, walk_forward

DECILES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
GATE_BASELINES = ("momentum_12_1", "reversal_5")


def reference_distributions(features: pd.DataFrame, names: list[str]) -> dict:
    """Per feature: deciles (0..100%) of the finite training values and the missing share."""
    out = {}
    for f in names:
        v = features[f].to_numpy(np.float64)
        ok = np.isfinite(v)
        q = np.quantile(v[ok], DECILES).tolist() if ok.any() else [None] * len(DECILES)
        out[f] = {"quantiles": DECILES, "values": q, "missing_rate": float(1 - ok.mean()) if len(v) else 1.0}
    return out


def fit_final(features: pd.DataFrame, labels: pd.DataFrame, cfg: BacktestConfig, sectors: dict | None = None,
              universe=None) -> tuple[list[str], dict, dict]:
    """Fit every horizon's Ensemble on all labelled rows (of ``universe``); return
    (feature_names, spec, files): the bundle the Scorer loads (``models.scoring``)."""
    if cfg.regime:
        raise TechnicError("regime features are a research-only (backtest) option: the streaming Scorer keeps "
                           "no universe-level regime state (see technic compare-variants for their value)")
    if cfg.sector_neutral and not sectors:
        raise TechnicError("sector-neutral training targets need the sector map (pass --securities)")
    features = features.sort_index()
    labels = labels.reindex(features.index)
    inputs = PanelInputs(features, group_codes(features.index, sectors), cfg.factor_names, cfg.factor_sector_neutral)
    rows = (np.arange(len(features)) if universe is None
            else np.flatnonzero(features.index.get_level_values(1).isin(list(universe))))
    targets = training_targets(labels, cfg, sectors)
    ens = {}
    for h in cfg.horizons:
        target, aux = targets[h]
        ens[h] = Ensemble(cfg, h, cfg.seed + 1000, cfg.purge(h)).fit(
            inputs, rows, target, labels[f"excess_{h}"].to_numpy(np.float64), aux)
    needed = {f for e in ens.values() for f in e.features_}
    if any(e.composite_ is not None for e in ens.values()):
        needed |= set(factor_inputs(cfg.factor_names))
    names = [c for c in features.columns if c in needed]
    spec = {"format": BUNDLE_FORMAT, "feature_names": names, "horizons": [int(h) for h in cfg.horizons],
            "lag": int(cfg.lag), "factors": {"names": list(cfg.factor_names), "sector_neutral": cfg.factor_sector_neutral},
            "training_target": "sector-neutral excess" if cfg.sector_neutral else "excess",
            "target_horizons": {str(h): list(cfg.target_horizons(h)) for h in cfg.horizons},
            "regime": None, "ensembles": {}}
    files: dict[str, bytes] = {}
    for h, e in ens.items():
        spec["ensembles"][str(h)], f = e.to_files(f"h{h}")
        files.update(f)
    files[SPEC_NAME] = json.dumps(spec, indent=1).encode()
    return names, spec, files


def gate_inputs(results: dict, cfg: BacktestConfig, labels: pd.DataFrame, features: pd.DataFrame) -> tuple:
    """(candidate metrics, {baseline: metrics}, null metrics) at the primary horizon, on the walk-forward's
    out-of-sample rows."""
    from .models.baselines import baseline_predictions
    h = int(cfg.horizons[0])
    pred = results["predictions"][h]
    lab = labels.reindex(pred.index)[[f"fwd_ret_{h}", f"excess_{h}"]]
    cand = M.summarize(pred[cfg.served], lab, h, cfg.cost_bps)
    base = baseline_predictions(features)
    bases = {b: M.summarize(base[b].reindex(pred.index), lab, h, cfg.cost_bps) for b in GATE_BASELINES}
    null = M.summarize(pred["null"], lab, h, cfg.cost_bps) if "null" in pred else None
    return cand, bases, null


def train_and_register(bars, fundamentals=None, securities=None, alt=None, *, registry_root=None,
                       cfg: BacktestConfig | None = None, end=None, force_promote: bool = False,
                       promote_if_empty: bool = False, gate_cfg=None, cache_dir=None, universe=None,
                       progress_factory=None, log: Callable[[str], None] | None = None) -> dict:
    """Backtest, fit the final models, register and gate them; return a summary dict."""
    from .data import sector_map
    from .registry import GateConfig, Registry
    cfg = cfg or BacktestConfig()
    cfg.check()
    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    if end is not None:
        bars = bars[pd.to_datetime(bars["date"]) <= pd.Timestamp(end)]
        if bars.empty:
            raise TechnicError(f"no bars on or before --end {end}")
    say(f"features for {bars['symbol'].nunique()} symbols x {bars['date'].nunique()} dates ...")
    feats = cached_features(bars, fundamentals, securities, alt, cache_dir=cache_dir)
    labels = make_labels(bars, cfg.label_horizons, lag=cfg.lag)
    sectors = sector_map(securities) if isinstance(securities, pd.DataFrame) else securities
    say(f"walk-forward backtest of {cfg.served} (the gate's out-of-sample evidence) ...")
    if progress_factory is not None:
        from .research import make_split
        try:
            n = make_split(cfg).get_n_splits(dates=feats.index.get_level_values(0)) * len(cfg.horizons)
        except ValueError:
            n = 0
        with progress_factory(n, "walk-forward folds") as tick:
            results = walk_forward(feats, labels, cfg, sectors, universe, tick)
    else:
        results = walk_forward(feats, labels, cfg, sectors, universe)
    cand, baselines, null = gate_inputs(results, cfg, labels, feats)
    say("final fit on every labelled row ...")
    t_final = time.perf_counter()
    names, spec, files = fit_final(feats, labels, cfg, sectors, universe)
    t_final = time.perf_counter() - t_final
    dates = pd.to_datetime(bars["date"])
    reg = Registry(registry_root)
    was_empty = reg.promoted() is None
    manifest = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_range": {"start": str(dates.min().date()), "end": str(dates.max().date()),
                       "n_symbols": int(bars["symbol"].nunique()), "n_rows": int(len(bars))},
        "data_hash": data_hash(bars), "feature_names": names, "feature_registry_hash": registry_hash(),
        "horizons": [int(h) for h in cfg.horizons], "primary_horizon": int(cfg.horizons[0]),
        "candidate": cfg.served, "lag": int(cfg.lag), "purge_bars": int(cfg.purge_days),
        "params": to_jsonable(vars(cfg)),
        "ensembles": {h: {k: v for k, v in e.items() if k != "models"} | {"models": [m["kind"] for m in e["models"]]}
                      for h, e in spec["ensembles"].items()},
        "final_fit_s": round(t_final, 1), "fold_metrics": to_jsonable(results["folds"]),
        "null_metrics": to_jsonable(null),
        "reference_distributions": reference_distributions(feats, names),
        "promotion_policy": ("--force-promote: promoted even if the gate fails" if force_promote else
                             "promoted if the gate fails and the registry has no promoted version (demo)"
                             if promote_if_empty else "promoted only if the gate passes"),
    }
    cand, baselines = to_jsonable(cand), to_jsonable(baselines)
    version, decision = reg.submit(files, manifest, cand, baselines, gate_cfg or GateConfig())
    promoted, how = decision.passed, "gate passed" if decision.passed else "rejected by the gate"
    if not decision.passed and (force_promote or (promote_if_empty and was_empty and reg.promoted() is None)):
        why = "--force-promote" if force_promote else "bootstrap: empty registry"
        reg.promote(version, reason=f"{why} (gate failed: {'; '.join(decision.reasons)})", force=True)
        promoted, how = True, f"promoted by {why} although the gate failed"
    return {"version": version, "gate": decision.to_dict(), "promoted": promoted, "status": how, "metrics": cand,
            "baselines": baselines, "null": null, "served": cfg.served, "feature_names": names,
            "wall_s": time.perf_counter() - t0}


def train_quick_model(bars, fundamentals=None, securities=None, registry_root=None, horizons=(5, 10),
                      end=None, promote_if_empty: bool = True) -> str:
    """Fast training for ``technic demo`` and the stream tools (< 60 s on ~100 symbols x 2 years);
    return the version.

    The default served design (factor composite + a LightGBM tilt sized out of fold) with small
    settings; a short walk-forward gives the gate its out-of-sample metrics. When the registry has
    no promoted version and ``promote_if_empty``, the first model is promoted even if the gate fails
    (recorded in the manifest's ``promotion_policy`` and status reason): a demo convenience, not a
    research claim.
    """
    return train_and_register(bars, fundamentals, securities, registry_root=registry_root,
                              cfg=quick_config(bars, horizons), end=end, promote_if_empty=promote_if_empty)["version"]


def quick_config(bars, horizons=(5, 10), n_threads: int = 2) -> BacktestConfig:
    """The small configuration of ``train_quick_model`` (and ``technic retrain --quick``)."""
    n_dates = int(np.unique(np.asarray(bars["date"])).size)
    return BacktestConfig(horizons=tuple(int(h) for h in horizons), models=("lgbm",), test_days=126,
                          min_train_days=int(min(252, max(40, n_dates // 2))), max_train_rows=40_000,
                          n_estimators=100, stack_folds=2, shap_rows=300, null=False, n_threads=n_threads,
                          model_params={"lgbm": {"learning_rate": 0.05, "min_data_in_leaf": 200}})
