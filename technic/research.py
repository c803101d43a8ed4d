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
from .models.preprocess import cross_sectional_target, cross_sectional_transform
from .selection import FeatureSelector, selection_stability
from .validation import WalkForwardSplit


MIN_SYMBOLS = 10  # per date: fewer names make daily ranks, deciles and RankIC meaningless


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

    def check(self) -> None:
        bad = [m for m in self.models if m not in MODEL_NAMES]
        if bad or not self.models:
            raise TechnicError(f"unknown model name(s) {bad or list(self.models)}; expected a comma-separated "
                               f"subset of {', '.join(MODEL_NAMES)}")
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


def fit_fold(Xn: pd.DataFrame, target: np.ndarray, dates: np.ndarray, train_idx: np.ndarray,
             cfg: BacktestConfig, horizon: int, seed: int) -> tuple[list[str], dict]:
    """Select features and fit every model on one training fold; return (features, {name: model})."""
    tr = train_idx[np.isfinite(target[train_idx])]
    tr = _subsample(tr, cfg.max_train_rows, seed)
    if len(tr) < 500:
        raise TechnicError(f"training fold has only {len(tr)} labelled rows; need at least 500 "
                           "(use more symbols or dates)")
    Xtr = Xn.iloc[tr]
    if cfg.k_features:
        sel = FeatureSelector(**{"k": cfg.k_features, "seed": seed, "n_threads": cfg.n_threads,
                                 **cfg.selector_params}).fit(Xtr, target[tr])
        feats = sel.selected_
    else:
        usable = Xtr.columns[(Xtr.isna().mean() <= 0.5) & (Xtr.nunique() > 1)]
        feats = list(usable)
    A = Xtr[feats].to_numpy(np.float64)
    models = {}
    for name in cfg.models:
        m = make_model(name, params=cfg.model_params.get(name), n_estimators=cfg.n_estimators,
                       early_stopping_rounds=cfg.early_stopping_rounds, gap_days=horizon,
                       seed=seed, n_threads=cfg.n_threads)
        models[name] = m.fit(A, target[tr], dates[tr])
    return feats, models


def walk_forward(features: pd.DataFrame, labels: pd.DataFrame, cfg: BacktestConfig,
                 progress: Callable[[int], None] | None = None) -> dict:
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
    base = baseline_predictions(features)
    test_all = np.sort(np.concatenate([te for _, te in folds]))
    test_index = features.index[test_all]
    results = {"horizons": {}, "folds": [], "selection": {}, "timing": {"fit_s": 0.0, "predict_s": 0.0,
                                                                         "train_rows": 0, "predict_rows": 0}}
    for h in cfg.horizons:
        target = cross_sectional_target(labels[f"excess_{h}"]).to_numpy()
        preds = {name: np.full(len(features), np.nan) for name in cfg.models}
        shap_sum: dict[str, dict[str, float]] = {name: {} for name in cfg.models}
        sets = []
        for i, (tr, te) in enumerate(folds):
            t0 = time.perf_counter()
            feats, models = fit_fold(Xn, target, dates, tr, cfg, h, cfg.seed + i)
            t1 = time.perf_counter()
            sets.append(feats)
            A = Xn.iloc[te][feats].to_numpy(np.float64)
            row = {"horizon": h, "fold": i, "n_features": len(feats),
                   "train_start": fold_table.train_start[i], "train_end": fold_table.train_end[i],
                   "test_start": fold_table.test_start[i], "test_end": fold_table.test_end[i]}
            t_pred = 0.0
            for name, m in models.items():
                tp = time.perf_counter()
                preds[name][te] = m.predict(A)
                t_pred += time.perf_counter() - tp
                sub = A[_subsample(np.arange(len(A)), cfg.shap_rows, cfg.seed)]
                for f, v in global_importance(m.contributions(sub), feats).items():
                    shap_sum[name][f] = shap_sum[name].get(f, 0.0) + v / len(folds)
                fp = pd.Series(preds[name][te], index=features.index[te])
                row[f"{name}_rank_ic"] = float(M.daily_ic(fp, labels[f"excess_{h}"].iloc[te], "spearman").mean())
                row[f"{name}_trees"] = int(m.best_iteration_)
            tm = results["timing"]
            tm["fit_s"] += t1 - t0          # selection + fitting every model of the fold
            tm["predict_s"] += t_pred       # model.predict on the test block only
            tm["train_rows"] += int(min(np.isfinite(target[tr]).sum(), cfg.max_train_rows)) * len(models)
            tm["predict_rows"] += len(te) * len(models)
            results["folds"].append(row)
            if progress:
                progress(1)
        hres = {"labels": labels.iloc[test_all][[f"fwd_ret_{h}", f"excess_{h}"]], "models": {}, "baselines": {}}
        for name in cfg.models:
            hres["models"][name] = {"pred": pd.Series(preds[name][test_all], index=test_index, name=name),
                                    "importance": dict(sorted(shap_sum[name].items(), key=lambda kv: -kv[1]))}
        if len(cfg.models) > 1:
            ens = np.mean([preds[n][test_all] for n in cfg.models], axis=0)
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
    if progress_factory is not None:
        with progress_factory(n_folds * len(cfg.horizons), "walk-forward folds") as tick:
            results = walk_forward(feats, labels, cfg, tick)
    else:
        results = walk_forward(feats, labels, cfg)
    t_wf = time.perf_counter() - t0 - t_feat
    summarize_results(results, cfg.cost_bps)
    sectors = sector_map(securities) if isinstance(securities, pd.DataFrame) else securities
    results["sectors"] = sectors or None
    meta = {**{k: v for k, v in asdict(cfg).items() if k not in ("model_params", "selector_params")},
            "n_symbols": int(bars["symbol"].nunique()), "n_rows": int(len(feats)),
            "data_start": str(pd.Timestamp(bars["date"].min()).date()),
            "data_end": str(pd.Timestamp(bars["date"].max()).date()),
            "purge_days": cfg.purge_days, "n_folds": int(len(results["folds"]) // len(cfg.horizons)),
            "target": "per-date rank-gauss of excess_h", "features_s": round(t_feat, 1),
            "walk_forward_s": round(t_wf, 1)}
    meta.update({f"selection_stability_h{h}": s["stability_jaccard"] for h, s in results["selection"].items()})
    results["meta"] = meta
    paths = write_tearsheet(out_dir, results, title)
    doc = json.loads(Path(paths["metrics"]).read_text())
    extra = {"folds": results["folds"], "selection": results["selection"], "timing": results["timing"]}
    from .evaluation.tearsheet import to_jsonable
    (Path(out_dir) / "folds.json").write_text(json.dumps(to_jsonable(extra), indent=1))
    doc["_results"] = results
    doc["_paths"] = paths
    return doc
