"""Alpha blend: the factor composite plus a tilt toward the ML score, sized out of fold.

``score = z(composite) + w * z(ml)`` where ``z`` is the per-date z-score (``inputs.date_zscore``) and
a missing side counts as the cross-sectional centre (0). The composite's weight is fixed at 1 (it is
the prior); only the size ``w`` of the ML tilt is learned, INSIDE the training window, from the ML
member's OUT-OF-FOLD predictions (purged inner K-fold, ``models.stacking.oof_predictions``), never
from the dates it is scored on:

1. every ``w`` of ``grid`` is scored by the mean daily RankIC of the blended OOF score against the
   training target;
2. one-standard-error rule: the smallest ``w`` whose mean daily RankIC is within one Newey-West
   standard error (``horizon - 1`` lags) of the best one's, on the paired daily difference, is kept.

So a weak ML gets ``w = 0`` (the blend is the composite) unless the data show it adds something.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def combine(comp_z: np.ndarray, ml_z: np.ndarray, w: float) -> np.ndarray:
    """``comp_z + w * ml_z`` with NaN as 0 on each side; NaN only where both are missing."""
    c, m = np.asarray(comp_z, float), np.asarray(ml_z, float)
    out = np.where(np.isfinite(c), c, 0.0) + w * np.where(np.isfinite(m), m, 0.0)
    return np.where(np.isfinite(c) | np.isfinite(m), out, np.nan)


class BlendWeight:
    """Learns the ML tilt ``w_`` (see module docstring). ``fit`` returns self."""

    def __init__(self, grid=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0), horizon: int = 5):
        self.grid = tuple(float(w) for w in grid)
        self.horizon = int(horizon)

    def fit(self, comp_z, ml_z, target, dates) -> "BlendWeight":
        from technic.evaluation.metrics import daily_ic, ic_summary
        idx = pd.MultiIndex.from_arrays([np.asarray(dates), np.arange(len(target))], names=["date", "row"])
        y = pd.Series(np.asarray(target, float), index=idx)
        ics = {w: daily_ic(pd.Series(combine(comp_z, ml_z, w), index=idx), y, "spearman") for w in self.grid}
        self.scores_ = {w: float(ic.mean()) if len(ic) else float("nan") for w, ic in ics.items()}
        finite = {w: v for w, v in self.scores_.items() if np.isfinite(v)}
        if not finite:
            self.w_, self.best_w_, self.se_ = 0.0, 0.0, float("nan")
            return self
        best = max(finite, key=lambda w: (finite[w], -w))
        self.best_w_ = best
        self.w_ = best
        self.se_ = {}
        for w in sorted(finite):
            if w >= best:
                break
            d = (ics[w] - ics[best]).dropna()
            s = ic_summary(d, horizon=self.horizon)
            se = abs(s["mean"] / s["nw_tstat"]) if s["nw_tstat"] and np.isfinite(s["nw_tstat"]) else 0.0
            self.se_[w] = se
            if finite[w] >= finite[best] - se:
                self.w_ = w
                break
        return self

    def predict(self, comp_z, ml_z) -> np.ndarray:
        return combine(comp_z, ml_z, self.w_)

    def to_dict(self) -> dict:
        return {"w": self.w_, "best_w": self.best_w_, "grid": list(self.grid), "horizon": self.horizon,
                "oof_rank_ic": {str(k): v for k, v in self.scores_.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "BlendWeight":
        b = cls(d["grid"], d.get("horizon", 5))
        b.w_, b.best_w_ = float(d["w"]), float(d.get("best_w", d["w"]))
        b.scores_ = {float(k): v for k, v in (d.get("oof_rank_ic") or {}).items()}
        return b
