"""LightGBM and XGBoost regressors tuned for a weak, noisy cross-sectional signal.

Defaults follow what works on daily equity data (Qlib's Alpha158 + LightGBM recipe and
the like): a small learning rate, shallow-ish trees with many rows per leaf
(``min_data_in_leaf`` ~ hundreds), column and row subsampling, L2 regularization, and
early stopping on an inner, time-ordered validation slice of the training fold (the
last dates, after a gap >= the label horizon: see ``technic.validation.inner_time_split``).
On this data early stopping typically keeps only tens of trees.

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
                 seed: int = 0, n_threads: int = 2):
        self.params = params
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.valid_frac = valid_frac
        self.gap_days = gap_days
        self.seed = seed
        self.n_threads = n_threads

    def _split(self, n: int, dates):
        if dates is None or self.early_stopping_rounds in (None, 0):
            return np.arange(n), None
        try:
            return inner_time_split(dates, self.valid_frac, self.gap_days)
        except ValueError:  # too few dates for an inner split: fit on everything, no early stopping
            return np.arange(n), None

    def get_params(self) -> dict:
        return {"kind": self.kind, "params": self.full_params(), "n_estimators": self.n_estimators,
                "early_stopping_rounds": self.early_stopping_rounds, "valid_frac": self.valid_frac,
                "gap_days": self.gap_days}


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
        if val_idx is not None:
            valid_sets = [lgb.Dataset(X[val_idx], y[val_idx], reference=dtrain)]
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        self.booster_ = lgb.train(params, dtrain, num_boost_round=self.n_estimators,
                                  valid_sets=valid_sets, callbacks=callbacks)
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        return self.booster_.predict(np.asarray(X, dtype=np.float64), num_iteration=self.best_iteration_,
                                     num_threads=self.n_threads)

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
        if val_idx is not None:
            dval = xgb.DMatrix(X[val_idx], y[val_idx], nthread=self.n_threads)
            evals = [(dval, "valid")]
            kw["early_stopping_rounds"] = self.early_stopping_rounds
        self.booster_ = xgb.train(params, dtrain, num_boost_round=self.n_estimators, evals=evals,
                                  verbose_eval=False, **kw)
        best = getattr(self.booster_, "best_iteration", None)
        self.best_iteration_ = int(best) + 1 if best is not None else self.booster_.num_boosted_rounds()
        if self.best_iteration_ < self.booster_.num_boosted_rounds():
            self.booster_ = self.booster_[: self.best_iteration_]
        self.n_features_in_ = X.shape[1]
        return self

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
