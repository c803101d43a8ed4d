"""One fitted Ensemble per horizon: the single object the backtest, ``technic train`` and the
stream's Scorer all use, so the evaluated and the served path are the same code.

An Ensemble holds, for one label horizon:

* ``features_``: the ML feature columns (all usable ones, or a selection fitted on the fold);
* ``models_``: the base learners (LightGBM, XGBoost, ridge, LSTM, Transformer; ``models.base``);
* ``stacker_``: optional non-negative Ridge over the base models' out-of-fold predictions;
* ``composite_``: the factor composite (``technic.factors``; not fitted: a prior);
* ``blend_``: the learned size of the ML tilt on the composite (``models.blend``);
* ``win_prob_``: optional calibrated meta-model P(excess > 0), P(top decile).

Everything fitted is fitted on the rows passed to ``fit`` only (a walk-forward training fold, or
all labelled rows for the production model); stack, blend and meta-model read OUT-OF-FOLD base
predictions of those rows (purged inner K-fold, purge = the label look-ahead ``purge`` bars).

``predict(inputs, rows)`` returns one array per member (each base model, ``ensemble`` = their
equal-weight mean, ``stack``, ``composite``, ``blend``) and ``served`` (see ``config``): rows must
include every symbol of each date scored (the per-date z-scores of the blend are taken over them).
Inputs come from ``models.inputs`` (the batch panel or one timestamp): same function, same numbers.
"""

from __future__ import annotations

import time

import numpy as np

from technic.errors import TechnicError

from .base import load_base, make_bases, save_base
from .blend import BlendWeight
from .config import EnsembleConfig
from .deep import DEEP_NAMES
from .inputs import date_zscore
from .stacking import RidgeStacker, oof_predictions

MIN_TRAIN_ROWS = 500


def subsample(idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At most ``n`` of ``idx``, drawn without replacement with ``seed``, kept in order."""
    if len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))


class Ensemble:
    """Everything served for one horizon (see module docstring). ``fit`` returns self."""

    def __init__(self, cfg: EnsembleConfig, horizon: int, seed: int = 0, purge: int | None = None):
        self.cfg = cfg
        self.horizon = int(horizon)
        self.seed = int(seed)
        self.purge = int(purge if purge is not None else horizon + 1)

    # ------------------------------------------------------------------ fitting
    def fit(self, inputs, rows, target, excess=None, aux=None, features=None, forced=()) -> "Ensemble":
        """Fit on ``rows`` of ``inputs`` against ``target`` (per-row, NaN = unlabelled).

        ``aux`` (n, H-1): auxiliary targets of the deep models' multi-horizon head; ``excess``: the
        excess-return label (the win-probability meta-model's outcome); ``features``: a feature list
        selected earlier on the same rows (skips the selection); ``forced``: columns always kept.
        """
        cfg = self.cfg
        target = np.asarray(target, dtype=np.float64)
        rows = np.asarray(rows)
        tr = subsample(rows[np.isfinite(target[rows])], cfg.max_train_rows, self.seed)
        if len(tr) < MIN_TRAIN_ROWS:
            raise TechnicError(f"training fold has only {len(tr)} labelled rows; need at least {MIN_TRAIN_ROWS} "
                               "(use more symbols or dates)")
        self.fit_s_ = {}
        t0 = time.perf_counter()
        self.features_ = self._select(inputs, tr, target, features, tuple(forced))
        self.fit_s_["selection"] = time.perf_counter() - t0
        X = self._inputs(inputs, tr)
        Y = target if aux is None else np.column_stack([target, aux])
        ys = {n: (Y[tr] if n in DEEP_NAMES else target[tr]) for n in cfg.base_models}
        dates = inputs.dates(tr)
        self.models_ = {}
        for name, m in make_bases(cfg, self.purge, self.seed).items():
            t0 = time.perf_counter()
            self.models_[name] = m.fit(X[name], ys[name], dates)
            self.fit_s_[name] = time.perf_counter() - t0
        self.stacker_ = self.blend_ = self.win_prob_ = None
        self.composite_ = self._composite(inputs)
        if cfg.needs_oof:
            self._fit_on_oof(inputs, tr, X, ys, target, excess, dates)
        self.n_train_rows_ = int(len(tr))
        return self

    def _select(self, inputs, tr, target, features, forced) -> list[str]:
        cfg = self.cfg
        cols = [c for c in inputs.columns if c not in forced]
        if features is not None:
            feats = [f for f in features if f not in forced]
        else:
            frame = inputs.tabular_frame(tr, cols)
            if cfg.k_features:
                from technic.selection import FeatureSelector
                sel = FeatureSelector(**{"k": cfg.k_features, "seed": self.seed, "n_threads": cfg.n_threads,
                                         **cfg.selector_params}).fit(frame, target[tr])
                feats = list(sel.selected_)
            else:
                usable = (frame.isna().mean() <= 0.5) & (frame.nunique() > 1)
                feats = list(frame.columns[usable.to_numpy()])
        return feats + [c for c in forced if c in inputs.columns]

    def _composite(self, inputs):
        from technic.factors import FactorComposite
        if inputs.factors(np.arange(0)) is None:
            return None
        return FactorComposite(self.cfg.factor_names, sector_neutral=self.cfg.factor_sector_neutral)

    def _fit_on_oof(self, inputs, tr, X, ys, target, excess, dates) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        P, names = oof_predictions(lambda s: make_bases(cfg, self.purge, s), X, ys, dates, cfg.stack_folds,
                                   self.purge, cfg.embargo_days, self.seed + 7919)
        self.fit_s_["oof_base"] = time.perf_counter() - t0
        if "stack" in cfg.models:
            self.stacker_ = RidgeStacker(cfg.stack_alpha, cfg.stack_positive).fit(P, target[tr])
        done = np.isfinite(P).all(axis=1)   # rows a forward split predicted (not the first block)
        ml = self.stacker_.predict(P) if self.stacker_ is not None else P.mean(axis=1)
        if cfg.blend:
            if self.composite_ is None:
                raise TechnicError("the blend needs the factor library's input features in the panel")
            r, d = tr[done], dates[done]
            comp = date_zscore(self.composite_.score(inputs.factors(r)), d)
            self.blend_ = BlendWeight(cfg.blend_max, self.horizon).fit(comp, date_zscore(ml[done], d), target[r], d)
        if cfg.use_win_prob:
            if excess is None:
                raise TechnicError("the win-probability meta-model needs the excess-return labels")
            from .meta import WinProbModel
            t0 = time.perf_counter()
            wp = WinProbModel(**{"gap_days": self.purge, "seed": self.seed, "n_threads": cfg.n_threads,
                                 **cfg.win_prob_params})
            self.win_prob_ = wp.fit(np.hstack([inputs.tabular(tr[done], self.features_), P[done]]),
                                    np.asarray(excess, float)[tr[done]], dates[done])
            self.fit_s_["win_prob"] = time.perf_counter() - t0

    # ------------------------------------------------------------------ scoring
    @property
    def seq_len(self) -> int:
        """Longest window the deep models read (0 without deep models)."""
        if hasattr(self, "models_"):
            return max([int(m.seq_len) for n, m in self.models_.items() if n in DEEP_NAMES], default=0)
        if not any(n in DEEP_NAMES for n in self.cfg.base_models):
            return 0
        from .deep import PRESETS
        return int({**PRESETS[self.cfg.deep_preset], **self.cfg.deep_params}["seq_len"])

    def _inputs(self, inputs, rows) -> dict:
        """{base model name: its input for ``rows``}: features for trees/ridge, windows for deep models."""
        names = list(self.models_) if hasattr(self, "models_") else list(self.cfg.base_models)
        out = {}
        if any(n not in DEEP_NAMES for n in names):
            A = inputs.tabular(rows, self.features_)
            out.update({n: A for n in names if n not in DEEP_NAMES})
        deep = [n for n in names if n in DEEP_NAMES]
        if deep:
            S = inputs.sequences(rows, self.features_, self.seq_len)
            out.update({n: S for n in deep})
        return out

    def base_predictions(self, inputs, rows) -> np.ndarray:
        """(len(rows), m) predictions of the base models, in ``models_`` order."""
        X = self._inputs(inputs, rows)
        if len(rows) == 0:
            return np.zeros((0, len(self.models_)))
        return np.column_stack([m.predict(X[n]) for n, m in self.models_.items()])

    def predict(self, inputs, rows=None, P=None) -> dict:
        """{member name: (len(rows),) scores, "served": ..., "win_prob": {target: probs} (if any)}."""
        rows = np.arange(len(inputs)) if rows is None else np.asarray(rows)
        P = self.base_predictions(inputs, rows) if P is None else P
        out = {n: P[:, j] for j, n in enumerate(self.models_)}
        if len(self.models_) > 1:
            out["ensemble"] = P.mean(axis=1)
        if self.stacker_ is not None:
            out["stack"] = self.stacker_.predict(P)
        ml = out[self.ml_name]
        if self.composite_ is not None:
            out["composite"] = self.composite_.score(inputs.factors(rows))
        if self.blend_ is not None:
            d = inputs.dates(rows)
            out["blend"] = self.blend_.predict(date_zscore(out["composite"], d), date_zscore(ml, d))
        out["served"] = out[self.served]
        if self.win_prob_ is not None:
            out["win_prob"] = self.win_prob_.predict_proba(np.hstack([inputs.tabular(rows, self.features_), P]))
        return out

    @property
    def ml_name(self) -> str:
        if self.stacker_ is not None:
            return "stack"
        return "ensemble" if len(self.models_) > 1 else next(iter(self.models_))

    @property
    def served(self) -> str:
        return "blend" if self.blend_ is not None else self.ml_name

    def contributions(self, inputs, rows=None, pred: dict | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(C, names, values): per row, the served score's additive contributions of the ML features
        (TreeSHAP / linear terms of the tree and ridge models, weighted by stack or equal weights;
        a deep model's share is not attributed) and, for the blend, of each factor (``factor:NAME``,
        its composite share); values = raw feature values / factor scores. For the blend both parts
        are divided by their side's per-date standard deviation, as the blend z-scores them.
        ``pred``: this call's ``predict`` output for the same rows, when already computed."""
        rows = np.arange(len(inputs)) if rows is None else np.asarray(rows)
        A = inputs.tabular(rows, self.features_)
        k, p = len(rows), len(self.features_)
        names = list(self.models_)
        w = (self.stacker_.coef_ if self.stacker_ is not None else np.full(len(names), 1.0 / len(names)))
        C = np.zeros((k, p))
        # a blend whose ML tilt is 0 gives the ML features no share: skip TreeSHAP (exactly the same zeros;
        # TreeSHAP of the 300-tree member is by far the costliest step of scoring a timestamp)
        ml_counts = self.blend_ is None or self.blend_.w_ != 0.0
        for (n, m), wj in zip(self.models_.items(), w):
            if ml_counts and n not in DEEP_NAMES and k and hasattr(m, "contributions"):
                C += m.contributions(A)[:, :p] * wj
        values = inputs.raw(rows, self.features_) if hasattr(inputs, "raw") else A
        if self.blend_ is None:
            return C, list(self.features_), values
        d = inputs.dates(rows)
        pred = self.predict(inputs, rows) if pred is None else pred
        ml, comp = pred[self.ml_name], pred["composite"]
        F = inputs.factors(rows)
        FC = self.composite_.contributions(F)
        C = C * (self.blend_.w_ / _date_sd(ml, d))[:, None]
        FC = FC / _date_sd(comp, d)[:, None]
        fnames = [f"factor:{n}" for n in self.composite_.names]
        return np.hstack([C, FC]), list(self.features_) + fnames, np.hstack([values, F])

    # ------------------------------------------------------------------ files
    def to_files(self, prefix: str) -> tuple[dict, dict[str, bytes]]:
        """(spec, files): JSON-able description + artifact bytes (no pickle)."""
        spec = {"horizon": self.horizon, "purge": self.purge, "seed": self.seed, "served": self.served,
                "ml": self.ml_name, "features": list(self.features_), "models": [], "fit_s":
                {k: round(v, 2) for k, v in self.fit_s_.items()}, "n_train_rows": self.n_train_rows_}
        files: dict[str, bytes] = {}
        for name, m in self.models_.items():
            entry, f = save_base(name, m, f"{prefix}_{name}")
            spec["models"].append(entry)
            files.update(f)
        if self.stacker_ is not None:
            spec["stack"] = {"models": list(self.models_), **self.stacker_.to_dict()}
        if self.composite_ is not None:
            spec["composite"] = self.composite_.to_dict()
        if self.blend_ is not None:
            spec["blend"] = self.blend_.to_dict()
        if self.win_prob_ is not None:
            files.update(self.win_prob_.to_files(f"{prefix}_meta"))
            spec["win_prob"] = {"prefix": f"{prefix}_meta"}
        return spec, files

    @classmethod
    def from_files(cls, spec: dict, read, cfg: EnsembleConfig | None = None, n_threads: int = 2) -> "Ensemble":
        from technic.factors import FactorComposite
        e = cls(cfg or EnsembleConfig(), spec["horizon"], spec.get("seed", 0), spec.get("purge"))
        e.features_ = list(spec["features"])
        e.models_ = {m["kind"]: load_base(m, read, n_threads) for m in spec["models"]}
        e.fit_s_ = dict(spec.get("fit_s") or {})
        e.n_train_rows_ = spec.get("n_train_rows")
        e.stacker_ = e.blend_ = e.win_prob_ = e.composite_ = None
        if spec.get("stack"):
            if spec["stack"]["models"] != list(e.models_):
                raise ValueError(f"stack models {spec['stack']['models']} do not match {list(e.models_)}")
            e.stacker_ = RidgeStacker.from_dict(spec["stack"])
        if spec.get("composite"):
            e.composite_ = FactorComposite.from_dict(spec["composite"])
        if spec.get("blend"):
            e.blend_ = BlendWeight.from_dict(spec["blend"])
        if spec.get("win_prob"):
            from .meta import WinProbModel
            e.win_prob_ = WinProbModel.from_files(read, spec["win_prob"]["prefix"], n_threads)
        return e

    @property
    def trees(self) -> dict:
        """{model: trees kept} (a list for seed bags; 0 for ridge, epochs for deep models)."""
        return {n: (m.trees if hasattr(m, "trees") else int(m.best_iteration_)) for n, m in self.models_.items()}


def _date_sd(x: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Per-row standard deviation (ddof 0) of the finite ``x`` of its date; 1 where it is 0 or undefined."""
    import pandas as pd
    s = pd.Series(np.asarray(x, float)).groupby(pd.factorize(np.asarray(dates))[0]).transform(
        lambda v: v.std(ddof=0))
    sd = s.to_numpy()
    return np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
