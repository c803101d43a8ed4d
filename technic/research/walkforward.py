"""Walk-forward: purged expanding (or rolling) folds; per fold one ``Ensemble`` per horizon is
fitted on the training dates and predicts the test block; the null model beside it.

Honesty rules (GUIDE section 3) and how they are met:

* every prediction is out of sample: a fold trains on dates strictly before its test block, with
  ``cfg.purge_days`` (>= the longest label look-ahead: target horizon + execution lag) dropped in
  between; the same folds serve every horizon, model, baseline and the null model;
* everything fitted is fitted inside the training fold (feature selection, models, inner model
  sizing, stack, blend weight, win-probability meta-model); per-date normalizations and the factor
  scores are functions of one date's cross-section and fit nothing;
* the **null model** is the same ML pipeline (selection, base models, stack) trained on the
  fold's targets shuffled within each date: whatever skill it shows is the pipeline's noise floor;
* ``universe``: the symbols trained on and evaluated; features and per-date transforms always use
  every symbol of the panel, so a subset changes nothing but which rows count.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import TechnicError
from ..evaluation import metrics as M
from ..explain import global_importance
from ..models.ensemble import Ensemble, subsample
from ..models.inputs import PanelInputs
from ..models.regime import REGIME_FEATURES, regime_columns
from ..selection import selection_stability
from ..validation import WalkForwardSplit
from .config import MIN_SYMBOLS, BacktestConfig
from .data import group_codes
from .targets import shuffle_within_dates, training_targets

NULL_SEED = 104_729


def null_config(cfg: BacktestConfig) -> BacktestConfig:
    """The null model's pipeline: the ML member only (no prior, no meta-model)."""
    return replace(cfg, blend=False, win_prob=False)


def make_split(cfg: BacktestConfig) -> WalkForwardSplit:
    return WalkForwardSplit(train_days=cfg.train_days, min_train_days=cfg.min_train_days, test_days=cfg.test_days,
                            purge_days=cfg.purge_days, embargo_days=cfg.embargo_days, horizon=cfg.purge_days)


def walk_forward(features: pd.DataFrame, labels: pd.DataFrame, cfg: BacktestConfig, sectors: dict | None = None,
                 universe=None, progress: Callable[[int], None] | None = None) -> dict:
    """Run the walk-forward; return ``predictions`` ({h: frame of the universe's test rows: ``fold``
    and one column per model, ``null``}), ``folds`` (one row per fold and horizon), ``selection``,
    ``importance``, ``win_prob`` and ``timing``."""
    cfg.check()
    for h in cfg.horizons:
        for g in cfg.target_horizons(h):
            if f"excess_{g}" not in labels.columns:
                raise TechnicError(f"labels have no horizon {g} (excess_{g}); available: "
                                   f"{sorted(c for c in labels.columns if c.startswith('excess_'))}")
    if cfg.sector_neutral and not sectors:
        raise TechnicError("sector_neutral=True needs a sector map (pass --securities)")
    features = features.sort_index()
    labels = labels.reindex(features.index)
    dates = features.index.get_level_values(0).to_numpy()
    in_univ = (np.ones(len(features), bool) if universe is None
               else features.index.get_level_values(1).isin(list(universe)))
    per_date = pd.Series(dates[in_univ]).value_counts()
    if len(per_date) == 0 or per_date.median() < MIN_SYMBOLS:
        raise TechnicError(f"too few symbols for a cross-sectional model: median "
                           f"{0 if len(per_date) == 0 else int(per_date.median())} symbols per date, "
                           f"need at least {MIN_SYMBOLS}")
    split = make_split(cfg)
    try:
        folds = list(split.split(dates=dates))
        table = split.folds(dates=dates)
    except ValueError as e:
        raise TechnicError(f"walk-forward: {e} ({len(np.unique(dates))} dates in the data)") from None
    passthrough = regime_columns(features) if cfg.regime else None
    inputs = PanelInputs(features, group_codes(features.index, sectors), cfg.factor_names,
                         cfg.factor_sector_neutral, passthrough)
    forced = REGIME_FEATURES if cfg.regime else ()
    targets = training_targets(labels, cfg, sectors)
    res = {"predictions": {}, "folds": [], "selection": {}, "importance": {}, "win_prob": {},
           "timing": {"fit_s": 0.0, "predict_s": 0.0, "fit_s_by_model": {}}}
    for h in cfg.horizons:
        res["predictions"][h] = _horizon(inputs, labels, cfg, h, targets[h], folds, table, in_univ, forced,
                                         res, progress)
    return res


def _horizon(inputs, labels, cfg, h, targets, folds, table, in_univ, forced, res, progress) -> pd.DataFrame:
    target, aux = targets
    excess = labels[f"excess_{h}"].to_numpy(np.float64)
    dates = inputs.index.get_level_values(0).to_numpy()
    both = np.column_stack([target] if aux is None else [target, aux])
    shuffled = shuffle_within_dates(both, dates, cfg.seed + NULL_SEED + h) if cfg.null else None
    cols: dict[str, np.ndarray] = {}
    fold_of = np.full(len(inputs), -1, np.int64)
    probs, naive, sets, shap = {}, {}, [], {}
    for i, (tr, te) in enumerate(folds):
        tr_u = tr[in_univ[tr]]
        t0 = time.perf_counter()
        e = Ensemble(cfg, h, cfg.seed + i, cfg.purge(h)).fit(inputs, tr_u, target, excess, aux, forced=forced)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = e.predict(inputs, te)
        res["timing"]["predict_s"] += time.perf_counter() - t0
        if cfg.null:
            t0 = time.perf_counter()
            en = Ensemble(null_config(cfg), h, cfg.seed + i, cfg.purge(h)).fit(
                inputs, tr_u, shuffled[:, 0], aux=None if aux is None else shuffled[:, 1:], forced=forced)
            out["null"] = en.predict(inputs, te)["served"]
            e.fit_s_["null"] = time.perf_counter() - t0
        for name, v in out.items():
            if name in ("served", "win_prob"):
                continue
            cols.setdefault(name, np.full(len(inputs), np.nan))[te] = v
        for t, p in (out.get("win_prob") or {}).items():
            probs.setdefault(t, np.full(len(inputs), np.nan))[te] = p
            naive.setdefault(t, np.full(len(inputs), np.nan))[te] = e.win_prob_.base_rates_[t]
        fold_of[te] = i
        sets.append(e.features_)
        te_u = te[in_univ[te]]
        _importance(e, inputs, te_u, cfg, len(folds), shap)
        res["folds"].append(_fold_row(e, i, h, table, out, te, in_univ, labels, inputs, t_fit))
        for k, v in e.fit_s_.items():
            res["timing"]["fit_s_by_model"][k] = res["timing"]["fit_s_by_model"].get(k, 0.0) + v
        res["timing"]["fit_s"] += t_fit
        if progress:
            progress(1)
    keep = np.flatnonzero((fold_of >= 0) & in_univ)
    frame = pd.DataFrame({"fold": fold_of[keep], **{n: v[keep] for n, v in cols.items()}},
                         index=inputs.index[keep])
    if probs:
        from ..models.meta import evaluate as evaluate_win_prob
        res["win_prob"][h] = evaluate_win_prob({t: p[keep] for t, p in probs.items()}, excess[keep], dates[keep],
                                               {t: v[keep] for t, v in naive.items()})
    counts = pd.Series([f for s in sets for f in s]).value_counts()
    res["selection"][h] = {"stability_jaccard": selection_stability(sets), "n_folds": len(sets),
                           "selected_in_every_fold": sorted(counts.index[counts == len(sets)]),
                           "counts": counts.to_dict()}
    res["importance"][h] = {n: dict(sorted(d.items(), key=lambda kv: -kv[1])) for n, d in shap.items()}
    return frame


def _importance(e: Ensemble, inputs, rows, cfg, n_folds: int, acc: dict) -> None:
    """Mean |SHAP| (tree models) or |coef * x| (ridge) per feature on a sample of the test rows."""
    sub = subsample(rows, cfg.shap_rows, cfg.seed)
    if not len(sub):
        return
    A = inputs.tabular(sub, e.features_)
    for name, m in e.models_.items():
        if not hasattr(m, "contributions"):
            continue
        for f, v in global_importance(m.contributions(A), e.features_).items():
            acc.setdefault(name, {})[f] = acc.get(name, {}).get(f, 0.0) + v / n_folds


def _fold_row(e: Ensemble, i, h, table, out, te, in_univ, labels, inputs, t_fit) -> dict:
    row = {"horizon": int(h), "fold": i, "n_features": len(e.features_), "n_train_rows": e.n_train_rows_,
           "train_start": table.train_start[i], "train_end": table.train_end[i],
           "test_start": table.test_start[i], "test_end": table.test_end[i],
           "fit_s": {k: round(v, 3) for k, v in e.fit_s_.items()}, "fit_total_s": round(t_fit, 2),
           "trees": e.trees}
    if e.stacker_ is not None:
        row["stack_coef"] = dict(zip(e.models_, e.stacker_.coef_.round(6).tolist()))
        row["stack_fallback"] = e.stacker_.fallback_
    if e.blend_ is not None:
        row["blend_w"] = e.blend_.w_
        row["blend_oof"] = e.blend_.to_dict()["oof"]
    te_u = te[in_univ[te]]
    y = labels[f"excess_{h}"].iloc[te_u]
    for name, v in out.items():
        if name in ("served", "win_prob"):
            continue
        p = pd.Series(np.asarray(v)[in_univ[te]], index=inputs.index[te_u])
        ic = M.daily_ic(p, y, "spearman")
        row[f"{name}_rank_ic"] = float(ic.mean()) if len(ic) else None
    return row
