"""Ridge regression on per-date rank-gauss features: the linear base learner.

Inputs are the cross-sectionally normalized features (``preprocess.rank_gauss``: ~N(0, 1) per date);
a missing value is the cross-sectional centre, 0. The penalty ``alpha`` is either given or chosen
inside the training fold: fitted on the fold's earlier dates, each candidate of ``alphas`` is scored
by the mean daily RankIC of its predictions on the last ``valid_frac`` of the dates (after a gap of
``gap_days`` >= the label horizon), the best is refitted on the whole fold. Deterministic.

Contributions are exact: ``coef_j * x_j`` per feature plus the intercept (last column), the linear
model's SHAP values against a zero baseline. Saved as JSON (coefficients, intercept, alpha).
"""

from __future__ import annotations

import json

import numpy as np

from technic.validation import inner_time_split

ALPHAS = (1e2, 1e3, 1e4, 1e5)


def mean_daily_rank_ic(pred: np.ndarray, y: np.ndarray, dates: np.ndarray) -> float:
    """Mean over dates of the per-date RankIC of ``pred`` vs ``y`` (``evaluation.metrics.daily_ic``)."""
    import pandas as pd

    from technic.evaluation.metrics import daily_ic
    idx = pd.MultiIndex.from_arrays([np.asarray(dates), np.arange(len(pred))], names=["date", "row"])
    ic = daily_ic(pd.Series(pred, index=idx), pd.Series(y, index=idx), "spearman")
    return float(ic.mean()) if len(ic) else float("nan")


def _fill(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return np.where(np.isfinite(X), X, 0.0)


class RidgeModel:
    """Ridge on normalized features (see module docstring). ``fit`` returns self."""

    kind = "ridge"
    suffix = ".json"

    def __init__(self, alpha: float | None = None, alphas=ALPHAS, valid_frac: float = 0.2, gap_days: int = 10,
                 seed: int = 0, n_threads: int = 2):
        self.alpha = alpha
        self.alphas = tuple(alphas)
        self.valid_frac = valid_frac
        self.gap_days = gap_days
        self.seed = seed
        self.n_threads = n_threads

    @staticmethod
    def _solve(A: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
        mx, my = A.mean(axis=0), y.mean()
        Ac = A - mx
        coef = np.linalg.solve(Ac.T @ Ac + alpha * np.eye(A.shape[1]), Ac.T @ (y - my))
        return coef, float(my - mx @ coef)

    def fit(self, X, y, dates=None):
        A, y = _fill(X), np.asarray(y, dtype=np.float64)
        ok = np.isfinite(y)
        A, y = A[ok], y[ok]
        d = None if dates is None else np.asarray(dates)[ok]
        self.alpha_scores_ = {}
        alpha = self.alpha
        if alpha is None:
            alpha = self.alphas[len(self.alphas) // 2]
            if d is not None:
                try:
                    f, v = inner_time_split(d, self.valid_frac, self.gap_days)
                except ValueError:
                    f = v = None
                if f is not None and len(f) and len(v):
                    for a in self.alphas:
                        c, b = self._solve(A[f], y[f], a)
                        self.alpha_scores_[a] = mean_daily_rank_ic(A[v] @ c + b, y[v], d[v])
                    finite = {a: s for a, s in self.alpha_scores_.items() if np.isfinite(s)}
                    if finite:
                        alpha = max(finite, key=lambda a: (finite[a], a))
        self.alpha_ = float(alpha)
        self.coef_, self.intercept_ = self._solve(A, y, self.alpha_)
        self.n_features_in_ = A.shape[1]
        self.best_iteration_ = 0
        return self

    def predict(self, X) -> np.ndarray:
        return _fill(X) @ self.coef_ + self.intercept_

    def contributions(self, X) -> np.ndarray:
        """(n, p + 1): ``coef_j * x_j`` and the intercept in the last column."""
        C = _fill(X) * self.coef_
        return np.column_stack([C, np.full(len(C), self.intercept_)])

    def to_bytes(self) -> bytes:
        return json.dumps({"kind": self.kind, "alpha": self.alpha_, "coef": self.coef_.tolist(),
                           "intercept": self.intercept_}).encode()

    @classmethod
    def from_bytes(cls, data: bytes, n_threads: int = 2) -> "RidgeModel":
        d = json.loads(data)
        m = cls(alpha=d["alpha"], n_threads=n_threads)
        m.alpha_, m.coef_, m.intercept_ = float(d["alpha"]), np.asarray(d["coef"], float), float(d["intercept"])
        m.n_features_in_, m.best_iteration_ = len(m.coef_), 0
        return m

    def get_params(self) -> dict:
        return {"kind": self.kind, "alpha": self.alpha_, "alphas": list(self.alphas),
                "alpha_scores": {str(k): v for k, v in self.alpha_scores_.items()}}
