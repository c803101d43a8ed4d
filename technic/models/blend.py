"""Alpha blend: the factor composite plus a tilt toward the ML score, sized out of fold.

``score = z(composite) + w * z(ml)`` where ``z`` is the per-date z-score (``inputs.date_zscore``) and
a missing side counts as the cross-sectional centre (0). The composite's weight is fixed at 1 (it is
the prior); only the size ``w`` of the ML tilt is learned, INSIDE the training window, from the ML
member's OUT-OF-FOLD predictions (``models.stacking.oof_predictions``; by default forward-only blocks,
``validation.forward_blocks``: each block predicted by a model trained on the dates before it, minus the
purge), never from the dates it is scored on:

1. on the training rows: the mean daily RankIC of the composite (``ic_c``) and of the OOF ML score
   (``ic_m``, with its Newey-West t-stat ``t_m``, ``horizon - 1`` lags), and ``rho``, the mean
   per-date correlation of the two z-scores;
2. James-Stein shrinkage of the ML's skill toward zero: ``ic_m' = ic_m * max(0, 1 - 1 / t_m^2)``
   (0 when ``ic_m <= 0``): an ML score indistinguishable from noise gets no weight;
3. the weight that maximizes the RankIC of ``a + w b`` for two unit-variance signals with skills
   ``ic_c``, ``ic_m'`` and correlation ``rho``: ``w = (ic_m' - rho ic_c) / (ic_c - rho ic_m')``,
   clipped to ``[0, max_w]`` (``max_w = 1``: the ML is a tilt on the prior, never its master). When the
   composite shows no skill in the window (``ic_c <= rho ic_m'``) the tilt is ``max_w`` if ``ic_m' > 0``.

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


def optimal_tilt(ic_c: float, ic_m: float, rho: float, max_w: float) -> float:
    """``argmax_w IC(a + w b)`` over ``[0, max_w]`` for unit-variance signals (see module docstring)."""
    if not ic_m > 0:
        return 0.0
    den = ic_c - rho * ic_m
    if den <= 0:
        return float(max_w)
    return float(np.clip((ic_m - rho * ic_c) / den, 0.0, max_w))


class BlendWeight:
    """Learns the ML tilt ``w_`` (see module docstring). ``fit`` returns self."""

    def __init__(self, max_w: float = 1.0, horizon: int = 5):
        self.max_w = float(max_w)
        self.horizon = int(horizon)

    def fit(self, comp_z, ml_z, target, dates) -> "BlendWeight":
        from technic.evaluation.metrics import daily_ic, ic_summary
        idx = pd.MultiIndex.from_arrays([np.asarray(dates), np.arange(len(target))], names=["date", "row"])
        y = pd.Series(np.asarray(target, float), index=idx)
        c, m = pd.Series(np.asarray(comp_z, float), index=idx), pd.Series(np.asarray(ml_z, float), index=idx)
        ic_c = ic_summary(daily_ic(c, y, "spearman"), horizon=self.horizon)
        ic_m = ic_summary(daily_ic(m, y, "spearman"), horizon=self.horizon)
        rho = daily_ic(c, m, "pearson")
        self.ic_c_, self.ic_m_ = _num(ic_c["mean"]), _num(ic_m["mean"])
        self.t_m_, self.rho_ = _num(ic_m["nw_tstat"]), _num(rho.mean()) if len(rho) else 0.0
        t2 = self.t_m_ ** 2
        self.shrink_ = max(0.0, 1.0 - 1.0 / t2) if t2 > 0 else 0.0
        self.w_ = optimal_tilt(self.ic_c_, self.ic_m_ * self.shrink_, self.rho_, self.max_w)
        return self

    def predict(self, comp_z, ml_z) -> np.ndarray:
        return combine(comp_z, ml_z, self.w_)

    def to_dict(self) -> dict:
        return {"w": self.w_, "max_w": self.max_w, "horizon": self.horizon,
                "oof": {"ic_composite": self.ic_c_, "ic_ml": self.ic_m_, "ml_nw_tstat": self.t_m_,
                        "shrink": self.shrink_, "rho": self.rho_}}

    @classmethod
    def from_dict(cls, d: dict) -> "BlendWeight":
        b = cls(d.get("max_w", 1.0), d.get("horizon", 5))
        b.w_ = float(d["w"])
        o = d.get("oof") or {}
        b.ic_c_, b.ic_m_, b.t_m_ = o.get("ic_composite"), o.get("ic_ml"), o.get("ml_nw_tstat")
        b.shrink_, b.rho_ = o.get("shrink"), o.get("rho")
        return b


def _num(v) -> float:
    v = float(v) if v is not None else float("nan")
    return v if np.isfinite(v) else 0.0
