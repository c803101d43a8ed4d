"""Out-of-fold stacking: purged inner K-fold base predictions -> Ridge meta-learner.

Used INSIDE one walk-forward training fold only (GUIDE section 3):

* ``oof_predictions`` splits the training fold's dates into contiguous blocks; by default
  (``technic.validation.forward_blocks``) each block after the first is predicted by base models
  fitted on the dates before it (purge >= the label look-ahead in between), exactly as the fold's
  models will be used: trained on the past, scoring the future. (A purged K-fold, ``forward=False``,
  also lets later blocks predict earlier ones; on non-stationary returns that flatters the models:
  on the dev data the K-fold out-of-fold RankIC of LightGBM reached 0.06 in windows whose next
  quarter gave 0.004.) A training row's stacking input never comes from a model that saw its
  label (nor a label overlapping it).
* ``RidgeStacker`` (optionally non-negative weights) is fitted on those out-of-fold
  predictions against the training target; at test time it combines the predictions of the
  base models refitted on the whole training fold.

The stack is only worth keeping if it beats both the equal-weight average of the base models
and the best single model out of sample: ``compare`` gives that table.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from technic.validation import forward_blocks, purged_kfold


def oof_predictions(make_models: Callable[[int], dict], A: np.ndarray, y: np.ndarray, dates: np.ndarray,
                    n_splits: int = 3, purge_days: int = 5, embargo_days: int = 5,
                    seed: int = 0, forward: bool = True) -> tuple[np.ndarray, list[str]]:
    """(n, m) out-of-fold predictions of the m base models from ``make_models(seed) -> {name: model}``.

    ``A`` and ``y`` are arrays, or dicts {model name: its input / its target} (sequence windows and
    multi-horizon targets for the deep models; the first entry's column 0 is the primary target).

    ``forward=True`` (default): ``validation.forward_blocks``: row i comes from models fitted on the
    dates before its block (minus ``purge_days``); the first block stays NaN. ``forward=False``:
    ``validation.purged_kfold``: row i comes from models fitted on rows whose dates lie outside
    [block_start - purge_days, block_end + embargo_days) of i's block.
    """
    A = A if isinstance(A, dict) else np.asarray(A, dtype=np.float64)  # dict: per-model inputs
    Y = y if isinstance(y, dict) else None                               # dict: per-model targets
    if Y is not None:  # the rows' primary target: a 1-D entry, or column 0 of a multi-horizon one
        y = next(np.asarray(v, dtype=np.float64) for v in Y.values())
        y = y if y.ndim == 1 else y[:, 0]
    y = np.asarray(y, dtype=np.float64)
    dates = np.asarray(dates)
    names = None
    P = None
    splits = (forward_blocks(dates, n_splits, purge_days) if forward
              else purged_kfold(dates, n_splits, purge_days, embargo_days))
    for k, (tr, ho) in enumerate(splits):
        tr = tr[np.isfinite(y[tr])]
        models = make_models(seed + k)
        if names is None:
            names = list(models)
            P = np.full((len(y), len(names)), np.nan)
        if len(tr) == 0 or len(ho) == 0:
            continue
        for j, name in enumerate(names):
            Aj = A[name] if isinstance(A, dict) else A
            yj = Y[name] if Y is not None else y
            P[ho, j] = models[name].fit(Aj[tr], yj[tr], dates[tr]).predict(Aj[ho])
    return P, names


class RidgeStacker:
    """Ridge meta-learner over base-model predictions (``positive=True``: non-negative weights).

    Degenerate fit: when every weight comes out 0 (with non-negative weights this happens when
    no base model's out-of-fold predictions correlate positively with the target), the Ridge
    would score every symbol the same constant -- no ranking at all. The stacker then falls back
    to the equal-weight average of the base models and says so (``fallback_ = "equal_weight"``),
    which is what the stack is compared against anyway.
    """

    def __init__(self, alpha: float = 1.0, positive: bool = True):
        self.alpha = alpha
        self.positive = positive

    def fit(self, P, y):
        from sklearn.linear_model import Ridge
        P, y = np.asarray(P, float), np.asarray(y, float)
        ok = np.isfinite(y) & np.isfinite(P).all(axis=1)
        r = Ridge(alpha=self.alpha, positive=self.positive).fit(P[ok], y[ok])
        self.coef_ = np.asarray(r.coef_, float)
        self.intercept_ = float(r.intercept_)
        self.fallback_ = None
        if not np.any(self.coef_ != 0):
            self.coef_ = np.full(P.shape[1], 1.0 / P.shape[1])
            self.intercept_ = 0.0
            self.fallback_ = "equal_weight"
        return self

    def predict(self, P) -> np.ndarray:
        return np.asarray(P, float) @ self.coef_ + self.intercept_

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "positive": self.positive, "coef": self.coef_.tolist(),
                "intercept": self.intercept_, "fallback": self.fallback_}

    @classmethod
    def from_dict(cls, d: dict) -> "RidgeStacker":
        s = cls(d["alpha"], d["positive"])
        s.coef_, s.intercept_ = np.asarray(d["coef"], float), float(d["intercept"])
        s.fallback_ = d.get("fallback")
        return s


def compare(summary_h: dict, base_names: list[str], key: str = "rank_ic_mean") -> dict:
    """Stack vs equal-weight average ('ensemble') vs the best single base model (chosen ex post,
    which flatters the single model: a conservative comparison for the stack)."""
    singles = {n: (summary_h.get(n) or {}).get(key) for n in base_names}
    singles = {n: v for n, v in singles.items() if v is not None}
    best = max(singles, key=singles.get) if singles else None
    get = lambda n: (summary_h.get(n) or {}).get(key)  # noqa: E731
    out = {"metric": key, "stack": get("stack"), "equal_weight_average": get("ensemble"),
           "best_single": best, "best_single_value": singles.get(best)}
    for n in ("stack", "ensemble"):
        for m in ("rank_icir", "rank_ic_nw_tstat"):
            out[f"{n}_{m}"] = get_metric(summary_h, n, m)
    s = out["stack"]
    out["stack_beats_both"] = bool(s is not None and all(v is not None and s > v for v in
                                                        (out["equal_weight_average"], out["best_single_value"])))
    return out


def get_metric(summary_h: dict, name: str, metric: str):
    return (summary_h.get(name) or {}).get(metric)
