"""Walk-forward research: features + labels -> purged folds -> select, fit, predict -> tear sheet.

Honesty rules (GUIDE section 3) and how they are met here:

* Every prediction is out-of-sample: each fold trains on dates strictly before its test block,
  with ``purge_days = max(horizons)`` (>= every label horizon) dropped in between, so no training
  label overlaps a test label. The same folds are used for every horizon, model and baseline.
* Everything fitted is fitted inside the training fold: feature selection, the models, early
  stopping (inner time-ordered slice: the fold's last dates after a gap of ``h`` dates).
  Feature normalization is a per-date cross-sectional rank-gauss (``models.preprocess``): a
  function of one date's cross-section only, so nothing is fitted across dates at all.
* Baselines (12-1 momentum, 5-day reversal, equal-weight universe) are reported on the same
  test dates. With several models, ``ensemble`` = mean of their predictions.
* Training target = per-date rank-gauss of ``excess_h``; metrics use ``excess_h`` (IC, hit
  rates) and ``fwd_ret_h`` (long-short), see ``technic.evaluation.metrics.summarize``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import TechnicError
from .evaluation import metrics as M
from .explain import global_importance
from .labels import make_labels
from .models.baselines import baseline_predictions, equal_weight_metrics
from .models.gbm import MODEL_NAMES, make_model
from .models.meta import WinProbModel
from .models.meta import evaluate as evaluate_win_prob
from .models.regime import REGIME_FEATURES, regime_columns, sector_neutral
from .models.stacking import RidgeStacker, oof_predictions
from .models.preprocess import cross_sectional_target, cross_sectional_transform
from .selection import FeatureSelector, selection_stability
from .validation import WalkForwardSplit


MIN_SYMBOLS = 10  # per date: fewer names make daily ranks, deciles and RankIC meaningless
META_MODELS = ("stack",)  # combine the base models (out-of-fold Ridge, ``models.stacking``)
DEEP_NAMES = ("lstm", "transformer")  # torch sequence models (``models.deep``, imported lazily)
ALL_MODEL_NAMES = (*MODEL_NAMES, *DEEP_NAMES, *META_MODELS)


@dataclass
class BacktestConfig:
    horizons: tuple = (5, 10)
    models: tuple = ("lgbm", "xgb")
    train_days: int | None = None          # None = expanding window
    min_train_days: int = 252
    test_days: int = 63                    # retrain every N trading days
    embargo_days: int = 5
    cost_bps: float = 10.0
    k_features: int = 40                   # 0 = no selection (all usable features)
    max_train_rows: int = 150_000          # row subsample of each training fold (speed)
    n_estimators: int = 400
    early_stopping_rounds: int = 40
    shap_rows: int = 2000
    seed: int = 0
    n_threads: int = 2
    model_params: dict = field(default_factory=dict)  # {"lgbm": {...}, "xgb": {...}}
    selector_params: dict = field(default_factory=dict)  # FeatureSelector overrides (sample_rows, ...)
    stack_folds: int = 3                   # inner purged K-fold for out-of-fold base predictions
    stack_alpha: float = 1.0
    stack_positive: bool = True
    win_prob: bool | None = None           # meta-model P(win); None = on when 'stack' is requested
    win_prob_params: dict = field(default_factory=dict)  # WinProbModel overrides
    deep_preset: str = "small"            # models.deep.PRESETS key ("small" CPU default, "seed" sizes)
    deep_params: dict = field(default_factory=dict)  # DeepModel overrides (hidden, epochs, max_rows, ...)
    regime: bool = False                   # append past-only market-regime columns (models.regime)
    sector_neutral: bool = False           # train on sector-neutral excess (needs sectors); metrics unchanged

    @property
    def base_models(self) -> tuple:
        return tuple(m for m in self.models if m not in META_MODELS)

    @property
    def use_win_prob(self) -> bool:
        return ("stack" in self.models) if self.win_prob is None else bool(self.win_prob)

    def check(self) -> None:
        bad = [m for m in self.models if m not in ALL_MODEL_NAMES]
        if bad or not self.models or not self.base_models:
            raise TechnicError(f"unknown model name(s) {bad or list(self.models)}; expected a comma-separated "
                               f"subset of {', '.join(ALL_MODEL_NAMES)} with at least one base model")
        if ("stack" in self.models or self.use_win_prob) and self.stack_folds < 2:
            raise TechnicError(f"stack_folds must be >= 2, got {self.stack_folds}")
        if not self.horizons or any(int(h) < 1 for h in self.horizons):
            raise TechnicError(f"horizons must be positive bar counts, got {list(self.horizons)}")
        if self.test_days < 1 or self.min_train_days < 20:
            raise TechnicError(f"need test_days >= 1 and min_train_days >= 20, got {self.test_days}, "
                               f"{self.min_train_days}")

    @property
    def purge_days(self) -> int:
        return int(max(self.horizons))


def data_hash(bars: pd.DataFrame) -> str:
    """SHA-256 of the bars frame's values (row order and columns included)."""
    h = hashlib.sha256()
    h.update(",".join(map(str, bars.columns)).encode())
    h.update(pd.util.hash_pandas_object(bars, index=False).to_numpy().tobytes())
    return h.hexdigest()


def cached_features(bars, fundamentals=None, securities=None, alt=None, cache_dir=None,
                    progress: Callable | None = None) -> pd.DataFrame:
    """``compute_features`` with a parquet cache keyed by the inputs' hash and the registry hash."""
    from .features.batch import compute_features
    from .features.registry import registry_hash
    if cache_dir is None:
        return compute_features(bars, fundamentals, securities, alt, progress=progress)
    parts = [data_hash(bars), registry_hash()]
    for extra in (fundamentals, alt):
        parts.append(data_hash(extra) if extra is not None else "-")
    if securities is not None:
        parts.append(data_hash(securities) if isinstance(securities, pd.DataFrame) else str(sorted(securities.items())))
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"features_{key}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    frame = compute_features(bars, fundamentals, securities, alt, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp)
    tmp.replace(path)
    return frame


def _subsample(idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))


def _make_base(cfg: BacktestConfig, horizon: int, seed: int) -> dict:
    out = {}
    for name in cfg.base_models:
        if name in DEEP_NAMES:
            from .models.deep import DeepModel
            out[name] = DeepModel(name, cfg.deep_preset, gap_days=horizon, seed=seed, n_threads=cfg.n_threads,
                                  **cfg.deep_params)
        else:
            out[name] = make_model(name, params=cfg.model_params.get(name), n_estimators=cfg.n_estimators,
                                   early_stopping_rounds=cfg.early_stopping_rounds, gap_days=horizon,
                                   seed=seed, n_threads=cfg.n_threads)
    return out


def model_inputs(Xn: pd.DataFrame, feats: list[str], rows: np.ndarray, cfg: BacktestConfig) -> dict:
    """{model name: input array} for ``rows``: 2-D features for trees, per-symbol windows for deep models."""
    A = Xn.iloc[rows][feats].to_numpy(np.float64)
    out = {n: A for n in cfg.base_models if n not in DEEP_NAMES}
    deep = [n for n in cfg.base_models if n in DEEP_NAMES]
    if deep:
        from .models.deep import PRESETS, build_sequences
        L = int({**PRESETS[cfg.deep_preset], **cfg.deep_params}["seq_len"])
        S = build_sequences(Xn[feats].to_numpy(np.float64), Xn.index.get_level_values(1).to_numpy(), rows, L)
        out.update({n: S for n in deep})
    return out


def fit_fold_ensemble(Xn: pd.DataFrame, target: np.ndarray, dates: np.ndarray, train_idx: np.ndarray,
                      cfg: BacktestConfig, horizon: int, seed: int, excess: np.ndarray | None = None,
                      aux_targets: np.ndarray | None = None, features: list[str] | None = None) -> dict:
    """Select features, fit the base models and (if asked) the stacker and win-prob meta-model on one
    training fold. Returns {features, models, stacker, win_prob, rows, fit_s: {name: seconds}}.

    The stacker and the meta-model are fitted on OUT-OF-FOLD base predictions of the training rows
    (purged inner K-fold, purge = horizon, embargo = cfg.embargo_days), never on in-sample fits.
    ``aux_targets`` (n, H-1): the other horizons' targets, auxiliary outputs of the deep models'
    multi-horizon head (head 0 = ``target`` is the one predicted); trees ignore them.
    ``features``: a feature list selected earlier on the SAME fold, rows and seed (e.g. by an earlier
    call's ``["features"]``) to skip the selection; it does not depend on the models' parameters.
    """
    tr = train_idx[np.isfinite(target[train_idx])]
    tr = _subsample(tr, cfg.max_train_rows, seed)
    if len(tr) < 500:
        raise TechnicError(f"training fold has only {len(tr)} labelled rows; need at least 500 "
                           "(use more symbols or dates)")
    Xtr = Xn.iloc[tr]
    forced = [c for c in REGIME_FEATURES if c in Xtr.columns]  # regime columns bypass selection
    Xtr_sel = Xtr.drop(columns=forced) if forced else Xtr
    t0 = time.perf_counter()
    if features is not None:
        feats = [f for f in features if f not in forced]
    elif cfg.k_features:
        sel = FeatureSelector(**{"k": cfg.k_features, "seed": seed, "n_threads": cfg.n_threads,
                                 **cfg.selector_params}).fit(Xtr_sel, target[tr])
        feats = list(sel.selected_)
    else:
        usable = Xtr_sel.columns[(Xtr_sel.isna().mean() <= 0.5) & (Xtr_sel.nunique() > 1)]
        feats = list(usable)
    feats += forced
    fit_s = {"selection": time.perf_counter() - t0}
    A = Xtr[feats].to_numpy(np.float64)
    inputs = model_inputs(Xn, feats, tr, cfg)
    Y = target if aux_targets is None else np.column_stack([target, aux_targets])
    ys = {n: (Y[tr] if n in DEEP_NAMES else target[tr]) for n in cfg.base_models}
    models = {}
    for name, m in _make_base(cfg, horizon, seed).items():
        t0 = time.perf_counter()
        models[name] = m.fit(inputs[name], ys[name], dates[tr])
        fit_s[name] = time.perf_counter() - t0
    out = {"features": feats, "models": models, "stacker": None, "win_prob": None, "rows": tr, "fit_s": fit_s}
    if "stack" in cfg.models or cfg.use_win_prob:
        t0 = time.perf_counter()
        P, names = oof_predictions(lambda s: _make_base(cfg, horizon, s), inputs, ys, dates[tr],
                                   cfg.stack_folds, horizon, cfg.embargo_days, seed + 7919)
        fit_s["oof_base"] = time.perf_counter() - t0
        if "stack" in cfg.models:
            t0 = time.perf_counter()
            out["stacker"] = RidgeStacker(cfg.stack_alpha, cfg.stack_positive).fit(P, target[tr])
            fit_s["stack"] = time.perf_counter() - t0 + fit_s["oof_base"]
        if cfg.use_win_prob:
            if excess is None:
                raise TechnicError("the win-probability meta-model needs the excess-return labels")
            t0 = time.perf_counter()
            wp = WinProbModel(**{"gap_days": horizon, "seed": seed, "n_threads": cfg.n_threads,
                                 **cfg.win_prob_params})
            out["win_prob"] = wp.fit(np.hstack([A, P]), excess[tr], dates[tr])
            fit_s["win_prob"] = time.perf_counter() - t0
    return out


def fit_fold(Xn: pd.DataFrame, target: np.ndarray, dates: np.ndarray, train_idx: np.ndarray,
             cfg: BacktestConfig, horizon: int, seed: int) -> tuple[list[str], dict]:
    """Select features and fit every base model on one training fold; return (features, {name: model})."""
    r = fit_fold_ensemble(Xn, target, dates, train_idx, cfg, horizon, seed)
    return r["features"], r["models"]


def horizon_targets(labels: pd.DataFrame, horizons, sectors: dict | None = None) -> np.ndarray | None:
    """(n, len(horizons)) training targets (per-date rank-gauss of excess_h, sector-neutral when
    ``sectors``) of the given horizons, or None when there are none: the multi-horizon head's
    auxiliary outputs."""
    cols = []
    for g in horizons:
        y = sector_neutral(labels[f"excess_{g}"], sectors) if sectors else labels[f"excess_{g}"]
        cols.append(cross_sectional_target(y).to_numpy())
    return np.column_stack(cols) if cols else None


def training_targets(labels: pd.DataFrame, cfg: BacktestConfig, sectors: dict | None = None) -> dict:
    """{h: (target (n,), aux (n, H-1) or None)}: every horizon's training target computed once
    (sector-neutral when ``cfg.sector_neutral``); ``aux`` = the other horizons' targets, the deep
    models' auxiliary outputs (None without deep models or with a single horizon)."""
    T = horizon_targets(labels, cfg.horizons, sectors if cfg.sector_neutral else None)
    deep = any(n in DEEP_NAMES for n in cfg.base_models)
    return {h: (T[:, j], np.delete(T, j, axis=1) if deep and T.shape[1] > 1 else None)
            for j, h in enumerate(cfg.horizons)}


def walk_forward(features: pd.DataFrame, labels: pd.DataFrame, cfg: BacktestConfig,
                 progress: Callable[[int], None] | None = None, sectors: dict | None = None) -> dict:
    """Run the walk-forward; return the tear-sheet ``results`` dict plus ``folds`` / ``selection``."""
    cfg.check()
    for h in cfg.horizons:
        if f"excess_{h}" not in labels.columns:
            raise TechnicError(f"labels have no horizon {h} (excess_{h}); available: "
                               f"{sorted(c for c in labels.columns if c.startswith('excess_'))}")
    features = features.sort_index()
    labels = labels.reindex(features.index)
    dates = features.index.get_level_values(0).to_numpy()
    n_dates = len(np.unique(dates))
    per_date = pd.Series(dates).value_counts()
    if len(per_date) == 0 or per_date.median() < MIN_SYMBOLS:
        raise TechnicError(f"too few symbols for a cross-sectional model: median "
                           f"{0 if len(per_date) == 0 else int(per_date.median())} symbols per date, "
                           f"need at least {MIN_SYMBOLS}")
    split = WalkForwardSplit(train_days=cfg.train_days, min_train_days=cfg.min_train_days,
                             test_days=cfg.test_days, purge_days=cfg.purge_days,
                             embargo_days=cfg.embargo_days, horizon=max(cfg.horizons))
    try:
        folds = list(split.split(dates=dates))
        fold_table = split.folds(dates=dates)
    except ValueError as e:
        raise TechnicError(f"walk-forward: {e} ({n_dates} dates in the data)") from None
    Xn = cross_sectional_transform(features)
    if cfg.regime:  # date-constant columns: appended after the per-date transform (see models.regime)
        Xn = pd.concat([Xn, regime_columns(features)], axis=1)
    if cfg.sector_neutral and not sectors:
        raise TechnicError("sector_neutral=True needs a sector map (pass --securities)")
    base = baseline_predictions(features)
    test_all = np.sort(np.concatenate([te for _, te in folds]))
    test_index = features.index[test_all]
    results = {"horizons": {}, "folds": [], "selection": {}, "timing": {"fit_s": 0.0, "predict_s": 0.0,
                                                                         "train_rows": 0, "predict_rows": 0}}
    results["timing"]["fit_s_by_model"] = {}
    results["win_prob"] = {}
    targets = training_targets(labels, cfg, sectors)
    for h in cfg.horizons:
        target, aux = targets[h]
        excess = labels[f"excess_{h}"].to_numpy(np.float64)
        preds = {name: np.full(len(features), np.nan) for name in cfg.models}
        probs = {}
        naive = {}
        shap_sum: dict[str, dict[str, float]] = {name: {} for name in cfg.base_models}
        sets = []
        for i, (tr, te) in enumerate(folds):
            t0 = time.perf_counter()
            fit = fit_fold_ensemble(Xn, target, dates, tr, cfg, h, cfg.seed + i, excess, aux)
            feats, models = fit["features"], fit["models"]
            t1 = time.perf_counter()
            sets.append(feats)
            inputs = model_inputs(Xn, feats, te, cfg)
            A = Xn.iloc[te][feats].to_numpy(np.float64)
            row = {"horizon": h, "fold": i, "n_features": len(feats),
                   "train_start": fold_table.train_start[i], "train_end": fold_table.train_end[i],
                   "test_start": fold_table.test_start[i], "test_end": fold_table.test_end[i],
                   "fit_s": {k: round(v, 3) for k, v in fit["fit_s"].items()}}
            for k, v in fit["fit_s"].items():
                fsm = results["timing"]["fit_s_by_model"]
                fsm[k] = fsm.get(k, 0.0) + v
            t_pred = 0.0
            for name, m in models.items():
                tp = time.perf_counter()
                preds[name][te] = m.predict(inputs[name])
                t_pred += time.perf_counter() - tp
                row[f"{name}_trees"] = int(m.best_iteration_)
                if not hasattr(m, "contributions"):
                    continue
                sub = A[_subsample(np.arange(len(A)), cfg.shap_rows, cfg.seed)]
                for f, v in global_importance(m.contributions(sub), feats).items():
                    shap_sum[name][f] = shap_sum[name].get(f, 0.0) + v / len(folds)
            P = np.column_stack([preds[n][te] for n in cfg.base_models])
            if fit["stacker"] is not None:
                preds["stack"][te] = fit["stacker"].predict(P)
                row["stack_coef"] = dict(zip(cfg.base_models, fit["stacker"].coef_.round(6).tolist()))
                row["stack_fallback"] = fit["stacker"].fallback_
            if fit["win_prob"] is not None:
                pr = fit["win_prob"].predict_proba(np.hstack([A, P]))
                for t, p in pr.items():
                    probs.setdefault(t, np.full(len(features), np.nan))[te] = p
                    naive.setdefault(t, np.full(len(features), np.nan))[te] = fit["win_prob"].base_rates_[t]
            for name in cfg.models:
                fp = pd.Series(preds[name][te], index=features.index[te])
                row[f"{name}_rank_ic"] = float(M.daily_ic(fp, labels[f"excess_{h}"].iloc[te], "spearman").mean())
            tm = results["timing"]
            tm["fit_s"] += t1 - t0          # selection + fitting every model of the fold
            tm["predict_s"] += t_pred       # model.predict on the test block only
            tm["train_rows"] += int(min(np.isfinite(target[tr]).sum(), cfg.max_train_rows)) * len(models)
            tm["predict_rows"] += len(te) * len(models)
            results["folds"].append(row)
            if progress:
                progress(1)
        if probs:
            results["win_prob"][h] = evaluate_win_prob({t: p[test_all] for t, p in probs.items()}, excess[test_all],
                                                       dates[test_all], {t: v[test_all] for t, v in naive.items()})
        hres = {"labels": labels.iloc[test_all][[f"fwd_ret_{h}", f"excess_{h}"]], "models": {}, "baselines": {}}
        for name in cfg.models:
            hres["models"][name] = {"pred": pd.Series(preds[name][test_all], index=test_index, name=name)}
            if name in shap_sum:
                hres["models"][name]["importance"] = dict(sorted(shap_sum[name].items(), key=lambda kv: -kv[1]))
        if len(cfg.base_models) > 1:
            ens = np.mean([preds[n][test_all] for n in cfg.base_models], axis=0)
            hres["models"]["ensemble"] = {"pred": pd.Series(ens, index=test_index, name="ensemble")}
        for name, p in base.items():
            hres["baselines"][name] = {"pred": p.iloc[test_all]}
        hres["baselines"]["equal_weight"] = {
            "pred": None, "metrics": equal_weight_metrics(hres["labels"][f"fwd_ret_{h}"], h)}
        results["horizons"][h] = hres
        counts = pd.Series([f for s in sets for f in s]).value_counts()
        results["selection"][h] = {"stability_jaccard": selection_stability(sets),
                                   "n_folds": len(sets), "selected_in_every_fold": sorted(counts.index[counts == len(sets)]),
                                   "counts": counts.to_dict()}
    return results


def summarize_results(results: dict, cost_bps: float) -> dict:
    """``{h: {name: metrics}}`` for models and baselines (fills ``metrics`` in place)."""
    out = {}
    for h, hres in results["horizons"].items():
        out[h] = {}
        for kind in ("models", "baselines"):
            for name, e in hres[kind].items():
                if e.get("metrics") is None:
                    e["metrics"] = M.summarize(e["pred"], hres["labels"], int(h), cost_bps)
                out[h][name] = e["metrics"]
    return out


def run_backtest(bars, fundamentals=None, securities=None, alt=None, *, out_dir, cfg: BacktestConfig,
                 title: str = "Technic walk-forward backtest", cache_dir=None, progress_factory=None) -> dict:
    """Features -> labels -> walk-forward -> ``metrics.json`` + ``report.html``; return the metrics doc."""
    import json

    from .evaluation.tearsheet import write_tearsheet
    from .data import sector_map
    cfg.check()
    t0 = time.perf_counter()
    feats = cached_features(bars, fundamentals, securities, alt, cache_dir=cache_dir)
    labels = make_labels(bars, cfg.horizons)
    t_feat = time.perf_counter() - t0
    try:
        n_folds = WalkForwardSplit(min_train_days=cfg.min_train_days, test_days=cfg.test_days,
                                   purge_days=cfg.purge_days).get_n_splits(dates=feats.index.get_level_values(0))
    except ValueError:
        n_folds = 0  # walk_forward raises the user-facing error
    sectors = sector_map(securities) if isinstance(securities, pd.DataFrame) else securities
    if progress_factory is not None:
        with progress_factory(n_folds * len(cfg.horizons), "walk-forward folds") as tick:
            results = walk_forward(feats, labels, cfg, tick, sectors=sectors)
    else:
        results = walk_forward(feats, labels, cfg, sectors=sectors)
    t_wf = time.perf_counter() - t0 - t_feat
    summarize_results(results, cfg.cost_bps)
    results["sectors"] = sectors or None
    meta = {**{k: v for k, v in asdict(cfg).items() if k not in ("model_params", "selector_params")},
            "n_symbols": int(bars["symbol"].nunique()), "n_rows": int(len(feats)),
            "data_start": str(pd.Timestamp(bars["date"].min()).date()),
            "data_end": str(pd.Timestamp(bars["date"].max()).date()),
            "purge_days": cfg.purge_days, "n_folds": int(len(results["folds"]) // len(cfg.horizons)),
            "target": "per-date rank-gauss of excess_h", "features_s": round(t_feat, 1),
            "walk_forward_s": round(t_wf, 1)}
    meta.update({f"selection_stability_h{h}": s["stability_jaccard"] for h, s in results["selection"].items()})
    meta.update({f"fit_s_{k}": round(v, 1) for k, v in results["timing"].get("fit_s_by_model", {}).items()})
    for h, wp in results.get("win_prob", {}).items():
        for t, e in wp.items():
            meta[f"win_prob_h{h}_{t}_brier"] = e["brier"]
            meta[f"win_prob_h{h}_{t}_brier_base_rate"] = e["brier_base_rate"]
    if "stack" in cfg.models:
        from .models.stacking import compare
        for h, hres in results["horizons"].items():
            cmp = compare({n: e["metrics"] for n, e in hres["models"].items()}, list(cfg.base_models))
            results.setdefault("stacking", {})[h] = cmp
            meta[f"stack_vs_h{h}"] = (f"stack {cmp['stack']:.4f} vs equal-weight {cmp['equal_weight_average'] or float('nan'):.4f} "
                                      f"vs best single {cmp['best_single']} {cmp['best_single_value']:.4f} (RankIC)")
    results["meta"] = meta
    paths = write_tearsheet(out_dir, results, title)
    doc = json.loads(Path(paths["metrics"]).read_text())
    from .evaluation.tearsheet import to_jsonable
    extra = {"folds": results["folds"], "selection": results["selection"], "timing": results["timing"],
             "stacking": results.get("stacking")}
    if results.get("win_prob"):
        from .models.meta import plot_reliability
        (Path(out_dir) / "win_prob.json").write_text(json.dumps(to_jsonable(results["win_prob"]), indent=1))
        plot_reliability(results["win_prob"], Path(out_dir) / "reliability.png")
    (Path(out_dir) / "folds.json").write_text(json.dumps(to_jsonable(extra), indent=1))
    doc["_results"] = results
    doc["_paths"] = paths
    return doc
