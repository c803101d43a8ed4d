"""Walk-forward splits with purge and embargo, on distinct trading dates.

Every number Technic reports is out-of-sample: a model is fitted on dates
strictly before its test block and scored on the block, then the window walks
forward by ``test_days`` (= retrain every N trading days).

Splits are made on DISTINCT DATES: all symbols of one date fall on the same
side, so a cross-sectional model never trains on part of a day it is scored on.

Purge. A label at date ``d`` looks ``horizon`` bars ahead (``close[d+h] /
close[d] - 1``). Training dates therefore stop ``purge_days`` dates before the
first test date: with test block starting at date position ``t`` the last
training date is ``t - purge_days - 1`` (exactly ``purge_days`` dates are
dropped in between). With ``purge_days >= horizon`` the last training label
ends at ``close[t - purge_days - 1 + horizon]``, i.e. strictly before the test
period's returns begin, so no training label overlaps a test label.

Embargo. ``embargo_days`` dates after each test block are also excluded from
that fold's training set (Lopez de Prado's embargo). In a forward-only walk the
training set never contains dates after its test block, so the embargo only
bites in :func:`purged_kfold` (out-of-fold predictions for stacking inside a
training fold), where training dates follow the held-out block; it is kept on
:class:`WalkForwardSplit` so both use the same guard band and fold metadata.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd


def _row_dates(X=None, dates=None) -> np.ndarray:
    """Per-row dates from ``dates`` or from the ``date`` level (else level 0) of X's index."""
    if dates is not None:
        return pd.DatetimeIndex(pd.to_datetime(np.asarray(dates))).values
    if X is None:
        raise ValueError("need X indexed by (date, symbol) or a dates= array; got neither")
    idx = X.index if hasattr(X, "index") else None
    if isinstance(idx, pd.MultiIndex):
        level = "date" if "date" in idx.names else 0
        return pd.DatetimeIndex(idx.get_level_values(level)).values
    if isinstance(idx, pd.DatetimeIndex):
        return idx.values
    raise ValueError(
        f"X must be indexed by (date, symbol) or a DatetimeIndex, got {type(idx).__name__}; "
        "pass dates= instead"
    )


def _date_codes(row_dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique dates, per-row position of its date in that list)."""
    uniq, codes = np.unique(row_dates, return_inverse=True)
    return uniq, codes.ravel()


class WalkForwardSplit:
    """Expanding or rolling walk-forward splitter (scikit-learn splitter shape).

    Parameters
    ----------
    train_days : int or None
        None = expanding window (all dates before the purge gap); int = rolling
        window of at most that many distinct dates.
    min_train_days : int
        Fewest training dates for the first fold (default 252).
    test_days : int
        Length of each test block in distinct dates = retrain frequency (default 63).
    purge_days : int
        Distinct dates dropped between train end and test start (default 5);
        must be >= the label horizon.
    embargo_days : int
        Dates after the test block excluded from training (default 5, see module doc).
    horizon : int or None
        Label horizon in bars; when given, ``purge_days < horizon`` raises ValueError.
    start, end : date-like or None
        Bounds on the test period (the first fold still needs ``min_train_days``).

    ``split(X, y=None, groups=None, dates=None)`` yields (train_idx, test_idx)
    integer row positions into X; ``folds(X)`` gives the same folds as dates.
    """

    def __init__(self, train_days=None, min_train_days=252, test_days=63, purge_days=5,
                 embargo_days=5, horizon=None, start=None, end=None):
        self.train_days = train_days
        self.min_train_days = min_train_days
        self.test_days = test_days
        self.purge_days = purge_days
        self.embargo_days = embargo_days
        self.horizon = horizon
        self.start = start
        self.end = end

    def _check_params(self) -> None:
        for name in ("min_train_days", "test_days"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("purge_days", "embargo_days"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if self.horizon is not None and self.purge_days < self.horizon:
            raise ValueError(
                f"purge_days={self.purge_days} is shorter than the label horizon={self.horizon}: "
                "training labels would overlap the test period; use purge_days >= horizon"
            )
        if self.train_days is not None and self.train_days < self.min_train_days:
            raise ValueError(
                f"train_days={self.train_days} is smaller than min_train_days={self.min_train_days}"
            )

    def _blocks(self, uniq: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Fold layout as date positions: (train_lo, train_hi, test_lo, test_hi), hi exclusive."""
        self._check_params()
        n = len(uniq)
        first = self.min_train_days + self.purge_days
        if self.start is not None:
            first = max(first, int(np.searchsorted(uniq, np.datetime64(pd.Timestamp(self.start)))))
        stop = n
        if self.end is not None:
            stop = int(np.searchsorted(uniq, np.datetime64(pd.Timestamp(self.end)), side="right"))
        if first >= stop:
            raise ValueError(
                f"too few dates for one walk-forward fold: {n} distinct dates exist"
                f"{' in the requested range' if (self.start or self.end) else ''}, need more than "
                f"min_train_days + purge_days = {self.min_train_days} + {self.purge_days} = "
                f"{self.min_train_days + self.purge_days} (plus at least 1 test date)"
            )
        blocks = []
        for t in range(first, stop, self.test_days):
            test_hi = min(t + self.test_days, stop)
            train_hi = t - self.purge_days  # exclusive: last train position = t - purge - 1
            train_lo = 0 if self.train_days is None else max(0, train_hi - self.train_days)
            blocks.append((train_lo, train_hi, t, test_hi))
        return blocks

    def split(self, X=None, y=None, groups=None, dates=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (train_idx, test_idx) integer row positions, in time order."""
        uniq, codes = _date_codes(_row_dates(X, dates))
        for train_lo, train_hi, test_lo, test_hi in self._blocks(uniq):
            band_hi = test_hi + self.embargo_days  # guard band [test_lo - purge, test_hi + embargo)
            in_train = (codes >= train_lo) & (codes < train_hi)
            in_train &= (codes < test_lo - self.purge_days) | (codes >= band_hi)
            in_test = (codes >= test_lo) & (codes < test_hi)
            yield np.flatnonzero(in_train), np.flatnonzero(in_test)

    def get_n_splits(self, X=None, y=None, groups=None, dates=None) -> int:
        """Number of folds for this data (needs X or dates: the count depends on them)."""
        uniq, _ = _date_codes(_row_dates(X, dates))
        return len(self._blocks(uniq))

    def folds(self, X=None, dates=None) -> pd.DataFrame:
        """One row per fold: train_start/end, test_start/end (inclusive dates) and date counts."""
        uniq, _ = _date_codes(_row_dates(X, dates))
        rows = [
            {"fold": i, "train_start": uniq[a], "train_end": uniq[b - 1], "test_start": uniq[c],
             "test_end": uniq[d - 1], "n_train_dates": b - a, "n_test_dates": d - c}
            for i, (a, b, c, d) in enumerate(self._blocks(uniq))
        ]
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def inner_time_split(dates, valid_frac: float = 0.2, gap_days: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Split one training fold into (fit_idx, valid_idx) for early stopping.

    ``dates`` are per-row dates of the training fold. The validation part is the
    last ``ceil(valid_frac * n_dates)`` distinct dates; ``gap_days`` dates before
    it are dropped (set it >= the label horizon so fit labels don't overlap).
    """
    if not 0 < valid_frac < 1:
        raise ValueError(f"valid_frac must be in (0, 1), got {valid_frac!r}")
    if gap_days < 0:
        raise ValueError(f"gap_days must be >= 0, got {gap_days!r}")
    uniq, codes = _date_codes(_row_dates(dates=dates))
    n = len(uniq)
    n_valid = max(1, int(np.ceil(valid_frac * n)))
    fit_hi = n - n_valid - gap_days
    if fit_hi < 1:
        raise ValueError(
            f"too few dates for an inner split: {n} distinct dates, need more than "
            f"{n_valid} validation + {gap_days} gap dates"
        )
    return np.flatnonzero(codes < fit_hi), np.flatnonzero(codes >= n - n_valid)


def forward_blocks(dates, n_splits: int = 3, purge_days: int = 5) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Forward-only out-of-fold splits inside one training fold: the dates are cut into
    ``n_splits + 1`` contiguous blocks; block k (k >= 1) is predicted by a model trained on the
    dates before it, ``purge_days`` dates dropped in between (>= the label look-ahead). Block 0 is
    never predicted. Unlike :func:`purged_kfold`, no block is predicted by a model that saw LATER
    data, so the out-of-fold skill is what a model trained on the past shows on the future (a
    K-fold lets the model learn the held-out period's neighbours, which flatters it on
    non-stationary returns)."""
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits!r}")
    uniq, codes = _date_codes(_row_dates(dates=dates))
    n = len(uniq)
    if n < n_splits + 1:
        raise ValueError(f"too few dates for forward_blocks: {n} distinct dates, need >= {n_splits + 1}")
    edges = np.linspace(0, n, n_splits + 2).astype(int)
    for lo, hi in zip(edges[1:-1], edges[2:]):
        yield np.flatnonzero(codes < lo - purge_days), np.flatnonzero((codes >= lo) & (codes < hi))


def purged_kfold(dates, n_splits: int = 5, purge_days: int = 5,
                 embargo_days: int = 5) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Purged K-fold over contiguous date blocks (for out-of-fold stacking inputs).

    Use only INSIDE a walk-forward training fold. Each block is held out in
    turn; training keeps dates outside [block_start - purge_days, block_end +
    embargo_days), so neither earlier labels overlapping the block nor later
    dates right after it leak into the held-out predictions.
    """
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits!r}")
    uniq, codes = _date_codes(_row_dates(dates=dates))
    n = len(uniq)
    if n < n_splits:
        raise ValueError(f"too few dates for purged_kfold: {n} distinct dates, need >= n_splits={n_splits}")
    edges = np.linspace(0, n, n_splits + 1).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        train = (codes < lo - purge_days) | (codes >= hi + embargo_days)
        yield np.flatnonzero(train), np.flatnonzero((codes >= lo) & (codes < hi))
