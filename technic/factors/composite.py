"""The factor composite: one prior signal from the factor library.

``score`` of a row = the weighted mean of its finite factor scores (weights renormalized over the
available factors, so a symbol without fundamentals is scored by its price factors alone; NaN when
none is finite). It is linear in the factor scores, so a score decomposes exactly into per-factor
contributions (``contributions``). Default weights are equal: a prior, not a fit.
"""

from __future__ import annotations

import numpy as np

from .library import FACTOR_NAMES, factor_by_name


class FactorComposite:
    """Weighted average of factor scores (columns in ``names`` order)."""

    def __init__(self, names=FACTOR_NAMES, weights=None, sector_neutral: bool = False):
        self.names = tuple(names)
        for n in self.names:
            factor_by_name(n)
        w = np.ones(len(self.names)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(self.names),) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {len(self.names)} non-negative finite numbers, not all 0; got {weights!r}")
        self.weights = w / w.sum()
        self.sector_neutral = bool(sector_neutral)

    def contributions(self, F: np.ndarray) -> np.ndarray:
        """(k, len(names)): each factor's share of the score (0 where missing); rows sum to ``score``."""
        F = np.asarray(F, dtype=np.float64)
        ok = np.isfinite(F)
        w = np.where(ok, self.weights, 0.0)
        tot = w.sum(axis=1, keepdims=True)
        return np.where(ok, F, 0.0) * w / np.where(tot > 0, tot, 1.0)

    def score(self, F: np.ndarray) -> np.ndarray:
        """(k,) composite of the rows' factor scores ``F`` (k, len(names))."""
        F = np.asarray(F, dtype=np.float64)
        have = np.isfinite(F).any(axis=1)
        return np.where(have, self.contributions(F).sum(axis=1), np.nan)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "weights": self.weights.tolist(), "sector_neutral": self.sector_neutral}

    @classmethod
    def from_dict(cls, d: dict) -> "FactorComposite":
        return cls(d["names"], d["weights"], d.get("sector_neutral", False))
