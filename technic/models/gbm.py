"""LightGBM and XGBoost regressors tuned for a weak, noisy cross-sectional signal.

Defaults follow what works on daily equity data (Qlib's Alpha158 + LightGBM recipe and
the like): a small learning rate, shallow-ish trees with many rows per leaf
(``min_data_in_leaf`` ~ hundreds), column and row subsampling, L2 regularization.

Model size (``stop_metric``):

* ``"none"``: a fixed number of trees (``n_estimators``) fitted on the whole training fold;
* ``"l2"``: classic early stopping on the squared error of an inner, time-ordered validation
  slice (the last dates after a gap >= the label horizon, ``technic.validation.inner_time_split``),
  patience ``early_stopping_rounds``. On a weak signal this often stops after a handful of trees
  (1-tree models that rank nothing): kept for comparison, not the default;
* ``"rank_ic"``: fit ``n_estimators`` trees on the part before that slice and keep the checkpoint
  (every ``step`` trees from ``min_trees`` on) with the best mean daily RankIC on the slice: the
  metric the model is judged by, and never fewer than ``min_trees`` trees.

Both models are deterministic: fixed seeds, ``deterministic=True`` for LightGBM,
``nthread`` fixed (2 by default). They serialize to safe native formats only
(LightGBM text, XGBoost JSON) and expose native SHAP contributions.

``fit(X, y, dates)``: ``X`` float array or frame (rows sorted by date), ``y`` the
target, ``dates`` per-row dates (for the inner split). Fitted attributes end with ``_``.
"""

from __future__ import annotations

import os

import numpy as np

from technic.validation import inner_time_split

# OpenMP threads that spin while waiting make 2 threads slower than 1 on a busy 2-core machine;
# passive waiting costs nothing when the cores are free. Read when libgomp loads, so set it early.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MODEL_NAMES = ("lgbm", "xgb")

LGBM_DEFAULTS = dict(
    objective="regression", learning_rate=0.03, num_leaves=31, max_depth=6,
    min_data_in_leaf=400, feature_fraction=0.6, bagging_fraction=0.7, bagging_freq=1,
    lambda_l2=10.0, max_bin=63, min_gain_to_split=0.0, verbosity=-1,
)
XGB_DEFAULTS = dict(
    objective="reg:squarederror", eta=0.03, max_depth=5, min_child_weight=400.0,
    subsample=0.7, colsample_bytree=0.6, reg_lambda=10.0, max_bin=63, tree_method="hist",
)


class _GBM:
    kind = ""

    def __init__(self, params: dict | None = None, n_estimators: int = 400,
                 early_stopping_rounds: int = 40, valid_frac: float = 0.2, gap_days: int = 10,
                 seed: int = 0, n_threads: int = 2, stop_metric: str = "l2", min_trees: int = 50,
                 step: int = 25):
        self.params = params
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.valid_frac = valid_frac
        self.gap_days = gap_days
        self.seed = seed
        self.n_threads = n_threads
        self.stop_metric = stop_metric
        self.min_trees = min_trees
        self.step = step

    @property
    def _early_l2(self) -> bool:
        return self.stop_metric == "l2" and bool(self.early_stopping_rounds)

    def _split(self, n: int, dates):
        if dates is None or not (self._early_l2 or self.stop_metric == "rank_ic"):
            return np.arange(n), None
        try:
            return inner_time_split(dates, self.valid_frac, self.gap_days)
        except ValueError:  # too few dates for an inner split: fit on everything, no early stopping
            return np.arange(n), None

    def _best_rank_ic_checkpoint(self, X_val, y_val, dates_val) -> int:
        """The checkpoint (>= min_trees, every ``step`` trees, and the last) with the best validation
        mean daily RankIC; ties go to the smaller model."""
        from .linear import mean_daily_rank_ic
        n = self._n_trees()
        lo = min(max(1, self.min_trees), n)
        ks = sorted({*range(lo, n + 1, max(1, self.step)), n})
        scores = {k: mean_daily_rank_ic(self._predict_k(X_val, k), y_val, dates_val) for k in ks}
        self.checkpoint_scores_ = scores
        finite = {k: v for k, v in scores.items() if np.isfinite(v)}
        return max(finite, key=lambda k: (finite[k], -k)) if finite else n

    def get_params(self) -> dict:
        return {"kind": self.kind, "params": self.full_params(), "n_estimators": self.n_estimators,
                "early_stopping_rounds": self.early_stopping_rounds, "valid_frac": self.valid_frac,
                "gap_days": self.gap_days, "stop_metric": self.stop_metric, "min_trees": self.min_trees}


class LGBMModel(_GBM):
    """LightGBM regressor (see module docstring)."""

    kind = "lgbm"
    suffix = ".txt"

    def full_params(self) -> dict:
        p = {**LGBM_DEFAULTS, **(self.params or {})}
        p.update(seed=self.seed, num_threads=self.n_threads, deterministic=True, force_col_wise=True)
        return p

    def fit(self, X, y, dates=None):
        import lightgbm as lgb
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        fit_idx, val_idx = self._split(len(y), dates)
        params = self.full_params()
        dtrain = lgb.Dataset(X[fit_idx], y[fit_idx], params={"max_bin": params["max_bin"]},
                             free_raw_data=True)
        callbacks, valid_sets = [], []
        if val_idx is not None and self._early_l2:
            valid_sets = [lgb.Dataset(X[val_idx], y[val_idx], reference=dtrain)]
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        self.booster_ = lgb.train(params, dtrain, num_boost_round=self.n_estimators,
                                  valid_sets=valid_sets, callbacks=callbacks)
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        if val_idx is not None and self.stop_metric == "rank_ic":
            self.best_iteration_ = self._best_rank_ic_checkpoint(X[val_idx], y[val_idx], np.asarray(dates)[val_idx])
        self.n_features_in_ = X.shape[1]
        return self

    def _n_trees(self) -> int:
        return self.booster_.current_iteration()

    def _predict_k(self, X, k: int) -> np.ndarray:
        return self.booster_.predict(X, num_iteration=k, num_threads=self.n_threads)

    def predict(self, X) -> np.ndarray:
        """Predictions of the first ``best_iteration_`` trees: the compiled form
        (``technic.models.tree_predict``, bitwise equal to ``booster_.predict``, one thread) when the
        model supports it and ``X`` is a (rows, n_features) array, else LightGBM."""
        X = np.asarray(X, dtype=np.float64)
        compiled = self._compiled_trees()
        if compiled is not None and X.ndim == 2 and X.shape[1] == compiled.num_feature:
            return compiled.predict(X)
        return self.booster_.predict(X, num_iteration=self.best_iteration_, num_threads=self.n_threads)

    def _compiled_trees(self):
        """The compiled form of ``booster_``'s first ``best_iteration_`` iterations, built on first use
        and rebuilt when either changes; None when the model is not supported (LightGBM predicts).
        A cache only: never pickled, never serialized (``to_bytes`` is the booster's text)."""
        cached = self.__dict__.get("_compiled")
        if cached is None or cached[0] is not self.booster_ or cached[1] != self.best_iteration_:
            from .tree_predict import compile_booster
            cached = (self.booster_, self.best_iteration_, compile_booster(self.booster_, self.best_iteration_))
            self._compiled = cached
        return cached[2]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_compiled", None)
        return state

    def contributions(self, X) -> np.ndarray:
        """(n, p + 1) SHAP values; the last column is the bias (expected value)."""
        return self.booster_.predict(np.asarray(X, dtype=np.float64), num_iteration=self.best_iteration_,
                                     pred_contrib=True, num_threads=self.n_threads)

    def gain_importance(self) -> np.ndarray:
        return self.booster_.feature_importance("gain", iteration=self.best_iteration_)

    def to_bytes(self) -> bytes:
        return self.booster_.model_to_string(num_iteration=self.best_iteration_).encode()

    @classmethod
    def from_bytes(cls, data: bytes, n_threads: int = 2) -> "LGBMModel":
        import lightgbm as lgb
        m = cls(n_threads=n_threads)
        m.booster_ = lgb.Booster(model_str=data.decode())
        m.best_iteration_ = m.booster_.current_iteration()
        m.n_features_in_ = m.booster_.num_feature()
        return m


class XGBModel(_GBM):
    """XGBoost regressor (see module docstring)."""

    kind = "xgb"
    suffix = ".json"

    def full_params(self) -> dict:
        p = {**XGB_DEFAULTS, **(self.params or {})}
        p.update(seed=self.seed, nthread=self.n_threads)
        return p

    def fit(self, X, y, dates=None):
        import xgboost as xgb
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        fit_idx, val_idx = self._split(len(y), dates)
        params = self.full_params()
        dtrain = xgb.QuantileDMatrix(X[fit_idx], y[fit_idx], max_bin=params["max_bin"], nthread=self.n_threads)
        evals, kw = [], {}
        if val_idx is not None and self._early_l2:
            dval = xgb.DMatrix(X[val_idx], y[val_idx], nthread=self.n_threads)
            evals = [(dval, "valid")]
            kw["early_stopping_rounds"] = self.early_stopping_rounds
        self.booster_ = xgb.train(params, dtrain, num_boost_round=self.n_estimators, evals=evals,
                                  verbose_eval=False, **kw)
        best = getattr(self.booster_, "best_iteration", None) if self._early_l2 else None
        self.best_iteration_ = int(best) + 1 if best is not None else self.booster_.num_boosted_rounds()
        if val_idx is not None and self.stop_metric == "rank_ic":
            self.best_iteration_ = self._best_rank_ic_checkpoint(X[val_idx], y[val_idx], np.asarray(dates)[val_idx])
        if self.best_iteration_ < self.booster_.num_boosted_rounds():
            self.booster_ = self.booster_[: self.best_iteration_]
        self.n_features_in_ = X.shape[1]
        return self

    def _n_trees(self) -> int:
        return self.booster_.num_boosted_rounds()

    def _predict_k(self, X, k: int) -> np.ndarray:
        return self.booster_.predict(self._dm(X), iteration_range=(0, k))

    def _dm(self, X):
        import xgboost as xgb
        return xgb.DMatrix(np.asarray(X, dtype=np.float64), nthread=self.n_threads)

    def predict(self, X) -> np.ndarray:
        return self.booster_.predict(self._dm(X))

    def contributions(self, X) -> np.ndarray:
        """(n, p + 1) SHAP values; the last column is the bias."""
        return self.booster_.predict(self._dm(X), pred_contribs=True)

    def gain_importance(self) -> np.ndarray:
        score = self.booster_.get_score(importance_type="total_gain")
        return np.array([score.get(f"f{j}", 0.0) for j in range(self.n_features_in_)])

    def to_bytes(self) -> bytes:
        return bytes(self.booster_.save_raw(raw_format="json"))

    @classmethod
    def from_bytes(cls, data: bytes, n_threads: int = 2) -> "XGBModel":
        import xgboost as xgb
        m = cls(n_threads=n_threads)
        m.booster_ = xgb.Booster(params={"nthread": n_threads})
        m.booster_.load_model(bytearray(data))
        m.best_iteration_ = m.booster_.num_boosted_rounds()
        m.n_features_in_ = m.booster_.num_features()
        return m


MODELS = {"lgbm": LGBMModel, "xgb": XGBModel}


def make_model(name: str, **kw) -> _GBM:
    """A fresh model by name ('lgbm' or 'xgb')."""
    if name not in MODELS:
        from technic.errors import TechnicError
        raise TechnicError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    return MODELS[name](**kw)


def load_model(name: str, data: bytes, n_threads: int = 2) -> _GBM:
    return MODELS[name].from_bytes(data, n_threads=n_threads)
