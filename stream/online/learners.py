"""Online learners that adapt between batch retrains (River ``learn_one`` / ``predict_one``).

Per horizon, ``OnlineLearner`` is a River pipeline ``StandardScaler | LinearRegression`` (SGD with a
constant learning rate, small L2, zero initial weights: deterministic, no randomness to seed). It is an
*online blend*: its inputs are the batch model's score (cross-sectionally z-scored) and the model's
features (cross-sectionally rank-gaussed, exactly what the batch model reads), its target the
cross-sectional gauss rank of the realized excess return once the label is known. Scaling happens
inside the River pipeline (running means/variances), so nothing is fitted outside the online stream.

State is never pickled: ``to_dict`` writes the River objects' numeric state (scaler counts, means,
variances; linear weights, intercept, the optimizer's iteration count; hyper-parameters) as JSON and
``from_dict`` rebuilds the pipeline and restores it, so a restored learner predicts identically and
keeps learning identically (tested).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from river import linear_model, optim, preprocessing


def _build(lr: float, l2: float, intercept_lr: float):
    return (preprocessing.StandardScaler()
            | linear_model.LinearRegression(optimizer=optim.SGD(lr), l2=l2, intercept_lr=intercept_lr))


class OnlineLearner:
    """River ``StandardScaler | LinearRegression`` over named inputs; vector helpers for batches."""

    def __init__(self, input_names, lr: float = 0.005, l2: float = 1e-3, intercept_lr: float = 0.001):
        self.input_names = [str(n) for n in input_names]
        if len(set(self.input_names)) != len(self.input_names) or not self.input_names:
            raise ValueError(f"input_names must be unique and non-empty, got {input_names!r}")
        self.lr, self.l2, self.intercept_lr = float(lr), float(l2), float(intercept_lr)
        self.model = _build(self.lr, self.l2, self.intercept_lr)
        self.n_learned = 0

    @property
    def _steps(self):
        sc, reg = self.model.steps.values()
        return sc, reg

    def _x(self, row) -> dict:
        return {n: (float(v) if v == v else 0.0) for n, v in zip(self.input_names, row)}  # NaN -> 0 (centre)

    def learn_one(self, x: dict, y: float) -> "OnlineLearner":
        self.model.learn_one(x, y)
        self.n_learned += 1
        return self

    def predict_one(self, x: dict) -> float:
        return float(self.model.predict_one(x))

    def learn_many(self, X, y) -> "OnlineLearner":
        """learn_one per row, in row order, skipping rows whose target is not finite."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        for i in np.flatnonzero(np.isfinite(y)):
            self.learn_one(self._x(X[i]), float(y[i]))
        return self

    def predict_many(self, X) -> np.ndarray:
        """Vectorized ``predict_one`` from the River state: the same formula (scaler ``(x - mean) / sqrt(var)``,
        0 where var is 0, then ``w . z + intercept``), equal to River's up to summation order (~1e-15)."""
        X = np.nan_to_num(np.asarray(X, dtype=np.float64), nan=0.0)
        sc, reg = self._steps
        n = self.input_names
        mean = np.array([sc.means.get(k, 0.0) for k in n])
        var = np.array([sc.vars.get(k, 0.0) for k in n])
        w = np.array([reg._weights.get(k, 0.0) if k in reg._weights else 0.0 for k in n])
        sd = np.sqrt(var)
        Z = np.where(var > 0, (X - mean) / np.where(var > 0, sd, 1.0), 0.0)
        return Z @ w + float(reg.intercept)

    def weights(self) -> dict:
        return dict(self._steps[1]._weights)

    # -- state ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        sc, reg = self._steps
        return {
            "input_names": self.input_names, "lr": self.lr, "l2": self.l2, "intercept_lr": self.intercept_lr,
            "n_learned": self.n_learned,
            "scaler": {"counts": dict(sc.counts), "means": dict(sc.means), "vars": dict(sc.vars)},
            "linear": {"weights": {k: float(v) for k, v in dict(reg._weights).items()},
                       "intercept": float(reg.intercept), "n_iterations": int(reg.optimizer.n_iterations)},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "OnlineLearner":
        m = cls(d["input_names"], d["lr"], d["l2"], d["intercept_lr"])
        m.n_learned = int(d["n_learned"])
        sc, reg = m._steps
        s = d["scaler"]
        sc.counts = Counter({k: int(v) for k, v in s["counts"].items()})
        sc.means = defaultdict(float, {k: float(v) for k, v in s["means"].items()})
        sc.vars = defaultdict(float, {k: float(v) for k, v in s["vars"].items()})
        lin = d["linear"]
        for k, v in lin["weights"].items():
            reg._weights[k] = float(v)
        reg.intercept = float(lin["intercept"])
        reg.optimizer.n_iterations = int(lin["n_iterations"])
        return m
