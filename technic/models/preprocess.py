"""Per-date cross-sectional normalization of features (leak-free by construction).

Every transform here is a pure function of ONE date's cross-section (all symbols
of one timestamp): nothing is fitted across dates, so there is nothing to fit
inside or outside a training fold, and the stream (one timestamp at a time) and
the batch path (the whole panel, date by date) produce bitwise identical values
for the same rows, whatever their order.

``rank_gauss``: per column, average ranks of the finite values r in 1..n, mapped
to u = (r - 0.5) / n and then z = Phi^-1(u) (``method="gauss"``) or u - 0.5
(``method="rank"``). NaN policy: a missing input stays NaN (LightGBM and XGBoost
route missing values natively; a silent 0 would be a fake observation); a column
with a single finite value maps it to 0 (the cross-sectional centre).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtri

from technic.features.kernels import average_ranks_sorted, gauss_from_ranks


def average_ranks(X: np.ndarray) -> np.ndarray:
    """Column-wise 1-based average ranks of the finite entries of ``X`` (k, p); NaN elsewhere.

    Ties get the mean of their positions (exact halves in float64), so the result does not depend
    on the row order. numpy sorts each column, one compiled pass assigns the ranks
    (``features.kernels.average_ranks_sorted``)."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] == 0:
        return X.copy()
    XT = X.T.copy()                      # one row per column: contiguous sorts
    XT[~np.isfinite(XT)] = np.inf        # NaN and -inf sort last too (ranked NaN by the kernel)
    return average_ranks_sorted(XT, np.argsort(XT, axis=1))


def rank_gauss(X: np.ndarray, method: str = "gauss") -> np.ndarray:
    """Column-wise cross-sectional rank transform of one date's matrix ``X`` (k, p)."""
    if method not in ("gauss", "rank"):
        raise ValueError(f"method must be 'gauss' or 'rank', got {method!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (symbols, features), got shape {X.shape}")
    R = average_ranks(X)
    n = np.isfinite(R).sum(axis=0)
    if method == "rank":
        return (R - 0.5) / np.maximum(n, 1) - 0.5
    return _gauss_of_ranks(R, n)


_NDTRI_TABLES: dict[int, np.ndarray] = {}


def ndtri_table(n: int) -> np.ndarray:
    """``ndtri((r - 0.5) / n)`` for every average rank a column of ``n`` finite values can hold,
    ``r = 1, 1.5, ..., n`` (index ``2 r - 2``): the same float64 operations as on the ranks
    themselves, so the same bits, computed once per ``n`` instead of once per entry."""
    t = _NDTRI_TABLES.get(n)
    if t is None:
        r = 1.0 + 0.5 * np.arange(2 * n - 1)
        t = ndtri((r - 0.5) / n)
        if len(_NDTRI_TABLES) >= 4096:   # many distinct universe sizes (a long batch run): start over
            _NDTRI_TABLES.clear()
        _NDTRI_TABLES[n] = t
    return t


def _gauss_of_ranks(R: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``ndtri((R - 0.5) / n)`` per column (``n``: its finite count), looked up in ``ndtri_table``."""
    sizes = np.unique(n[n > 0]).tolist()
    if not sizes:
        return np.full(R.shape, np.nan)
    tables = [ndtri_table(m) for m in sizes]
    starts = dict(zip(sizes, np.cumsum([0] + [len(t) for t in tables[:-1]]).tolist()))
    offsets = np.array([starts.get(m, 0) for m in n.tolist()], dtype=np.int64)
    table = tables[0] if len(tables) == 1 else np.concatenate(tables)
    return gauss_from_ranks(R, table, offsets)


def date_bounds(dates: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) row slices of each date in a date-sorted array."""
    d = np.asarray(dates)
    if len(d) == 0:
        return []
    cut = np.flatnonzero(d[1:] != d[:-1]) + 1
    starts = np.r_[0, cut]
    stops = np.r_[cut, len(d)]
    return list(zip(starts.tolist(), stops.tolist()))


def cross_sectional_transform(frame: pd.DataFrame, method: str = "gauss") -> pd.DataFrame:
    """Apply :func:`rank_gauss` date by date to a (date, symbol)-indexed frame (sorted by date)."""
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index()
    X = frame.to_numpy(np.float64)
    out = np.empty_like(X)
    for a, z in date_bounds(frame.index.get_level_values(0).to_numpy()):
        out[a:z] = rank_gauss(X[a:z], method)
    return pd.DataFrame(out, index=frame.index, columns=frame.columns)


def cross_sectional_target(y: pd.Series, method: str = "gauss") -> pd.Series:
    """The training target: per-date rank-gauss of a label (robust to outliers, IC-aligned)."""
    t = cross_sectional_transform(y.to_frame(), method)
    return t.iloc[:, 0]
