"""Factor scores of ONE timestamp's cross-section (shared by backtest, training and stream).

Definitions, per date (all symbols of one timestamp):

* a term's value is ``sign * feature`` (``sector_mean`` terms: the mean of the feature over the
  finite values of the symbol's sector that date; unknown sector -> NaN);
* a term's z-score is its gaussianized rank: ``Phi^-1((r - 0.5) / n)`` with r the average rank
  among the n finite values (``models.preprocess.rank_gauss``): robust to outliers without a
  winsorization threshold; missing stays NaN;
* a factor's raw score is the mean of its finite term z-scores (NaN when none), gaussianized again
  so every factor is on the same per-date scale;
* ``sector_neutral=True``: the factor score minus its sector mean that date (sectors with at least
  ``MIN_GROUP`` finite scores; symbols of unknown or smaller sectors keep their score), then
  gaussianized again. ``industry_momentum`` is a between-sector signal and is never neutralized.

Pure functions of one cross-section: row order does not matter and the batch panel (date by date)
and the stream (one timestamp) give bitwise identical values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from technic.models.preprocess import date_bounds, rank_gauss

from .library import FACTOR_NAMES, factor_by_name, factor_inputs

MIN_GROUP = 3
BETWEEN_SECTOR = ("industry_momentum",)


def _sector_mean(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    ok = np.isfinite(x) & (groups >= 0)
    if not ok.any():
        return out
    size = int(groups.max()) + 1
    cnt = np.bincount(groups[ok], minlength=size)
    tot = np.bincount(groups[ok], weights=x[ok], minlength=size)
    known = groups >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot / cnt
    out[known] = np.where(cnt[groups[known]] > 0, mean[groups[known]], np.nan)
    return out


def _demean_within(z: np.ndarray, groups: np.ndarray) -> np.ndarray:
    ok = np.isfinite(z) & (groups >= 0)
    if not ok.any():
        return z
    size = int(groups.max()) + 1
    cnt = np.bincount(groups[ok], minlength=size)
    tot = np.bincount(groups[ok], weights=z[ok], minlength=size)
    big = ok & (cnt[np.where(groups >= 0, groups, 0)] >= MIN_GROUP)
    out = z.copy()
    out[big] = z[big] - tot[groups[big]] / cnt[groups[big]]
    return out


def factor_scores(X: np.ndarray, columns: list[str], groups: np.ndarray | None = None,
                  names=FACTOR_NAMES, sector_neutral: bool = False) -> np.ndarray:
    """(k, len(names)) factor scores of one date. ``X`` (k, p): raw feature values of the date's
    k symbols in ``columns`` order (must include :func:`factor_inputs`); ``groups`` (k,) sector
    codes (-1 = unknown; None = all unknown)."""
    X = np.asarray(X, dtype=np.float64)
    k = X.shape[0]
    g = np.full(k, -1, np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    col = {c: j for j, c in enumerate(columns)}
    missing = [f for f in factor_inputs(names) if f not in col]
    if missing:
        raise ValueError(f"factor_scores needs feature column(s) {missing}")
    out = np.full((k, len(names)), np.nan)
    if k == 0:
        return out
    # every rank transform is per column, so each step ranks all factors' columns in one call
    # (the same values as one column at a time, a few calls per date instead of one per term)
    terms = [(j, t) for j, name in enumerate(names) for t in factor_by_name(name).terms]
    V = np.empty((k, len(terms)))
    for c, (_, t) in enumerate(terms):
        v = t.sign * X[:, col[t.feature]]
        V[:, c] = _sector_mean(v, g) if t.transform == "sector_mean" else v
    Zt = rank_gauss(V)
    owner = np.array([j for j, _ in terms])
    raw = np.empty((k, len(names)))
    for j in range(len(names)):
        Z = Zt[:, owner == j]
        n = np.isfinite(Z).sum(axis=1)
        raw[:, j] = np.where(n > 0, np.nansum(Z, axis=1) / np.maximum(n, 1), np.nan)
    out[:] = rank_gauss(raw)
    if sector_neutral:
        neutral = [j for j, name in enumerate(names) if name not in BETWEEN_SECTOR]
        if neutral:
            out[:, neutral] = rank_gauss(np.column_stack([_demean_within(out[:, j], g) for j in neutral]))
    return out


def factor_panel(features: pd.DataFrame, groups: np.ndarray | None = None, names=FACTOR_NAMES,
                 sector_neutral: bool = False) -> pd.DataFrame:
    """:func:`factor_scores` date by date over a (date, symbol) feature panel sorted by date;
    ``groups`` aligned with the rows."""
    if not features.index.is_monotonic_increasing:
        raise ValueError("factor_panel needs a (date, symbol) panel sorted by date")
    cols = factor_inputs(names)
    X = features[cols].to_numpy(np.float64)
    g = np.full(len(X), -1, np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    out = np.full((len(X), len(names)), np.nan)
    for a, z in date_bounds(features.index.get_level_values(0).to_numpy()):
        out[a:z] = factor_scores(X[a:z], cols, g[a:z], names, sector_neutral)
    return pd.DataFrame(out, index=features.index, columns=list(names))
