"""Windowed and recursive operators (see ``ops.py`` for the conventions).

Batch forms use pandas/numpy rolling kernels over the ``(L, N)`` panel.
Incremental forms keep a ring buffer of the last ``w`` inputs per symbol slot
plus running statistics updated in O(1) (Neumaier-compensated sums, Welford
add/remove updates for second moments), or scan the ring buffer
(Max/Min/BarsSince/TsRank: O(w)); each class declares that state
(``state_fields``, in kernel layout order) and the compiled kernel that
updates it (``opcode``, see ``kernels.py``).

A window is valid only when its ``w`` most recent inputs are all present;
``nbad`` counts the missing (NaN or not yet seen) entries of the buffer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import kernels as K
from .ops import Op, _const, _finite
from .plan import StateField

_CHUNK = 256  # rows per chunk for sliding-window batch kernels (bounds memory)


def _rolling(x: np.ndarray, w: int) -> pd.core.window.Rolling:
    return pd.DataFrame(x).rolling(w, min_periods=w)


def _sliding(x: np.ndarray, w: int, fn) -> np.ndarray:
    """Apply ``fn(windows)`` (windows shape (rows, N, w)) chunk by chunk."""
    L = x.shape[0]
    out = np.full(x.shape, np.nan)
    if L < w:
        return out
    view = np.lib.stride_tricks.sliding_window_view(x, w, axis=0)  # (L-w+1, N, w)
    for a in range(0, view.shape[0], _CHUNK):
        win = view[a:a + _CHUNK]
        with np.errstate(all="ignore"):
            res = fn(win)
        res[np.isnan(win).any(axis=2)] = np.nan
        out[a + w - 1:a + w - 1 + win.shape[0]] = res
    return out


def _rolling_var(x: np.ndarray, w: int) -> np.ndarray:
    """Sample variance (ddof=1) of each full window, 0 for a constant window.

    pandas' rolling variance updates running moments as values enter and leave, so its absolute
    rounding error scales with the largest squares that went through them, not with the window:
    a small variance after large values (a price that fell from 1e6 to 1) can be off in the 7th
    digit. Where the result could be that inexact (the largest x^2 seen so far exceeds
    ``_VAR_CHECK`` x the variance) the window is recomputed exactly by two passes (mean, then the
    squared deviations), as the incremental form re-derives its moments."""
    r = _rolling(x, w)
    v = np.where(_constant(r), 0.0, r.var().to_numpy())
    with np.errstate(invalid="ignore"):
        seen = pd.DataFrame(x * x).cummax().to_numpy()
        t, j = np.nonzero(np.isfinite(v) & (v > 0) & (seen > _VAR_CHECK * v))
    if len(t):
        view = np.lib.stride_tricks.sliding_window_view(x, w, axis=0)  # (L-w+1, N, w)
        for a in range(0, len(t), 4096):
            win = view[t[a:a + 4096] - (w - 1), j[a:a + 4096]]
            d = win - win.mean(axis=1, keepdims=True)
            v[t[a:a + 4096], j[a:a + 4096]] = (d * d).sum(axis=1) / (w - 1)
    return v


_VAR_CHECK = 1e4


def _constant(r) -> np.ndarray:
    """Windows whose values are all equal (exact, unlike a variance residue)."""
    return (r.max() == r.min()).to_numpy()


def _zeros(*names: str) -> tuple[StateField, ...]:
    return tuple(StateField(n, "f", 0.0) for n in names)


class Window(Op):
    """Base of operators over the last ``w`` bars of one or two inputs."""

    n_inputs = 1

    def __init__(self, *args):
        *children, w = args
        if int(w) < 1:
            raise ValueError(f"{type(self).__name__} needs a window >= 1, got {w!r}")
        self.children = tuple(_const(c) for c in children)
        self.params = (int(w),)

    @property
    def w(self) -> int:
        return self.params[0]

    @property
    def lookback(self) -> int:
        return max(c.lookback for c in self.children) + self.w - 1

    def kernel_params(self):
        return self.w, 0.0

    def state_fields(self):
        # floats: the ring buffer(s), then the running statistics; ints: bars seen, missing
        # entries in the window (all w until the window has filled), then extra counters
        bufs = tuple(StateField(f"buf{k}", "f", np.nan, self.w) for k in range(self.n_inputs))
        return (bufs + self.stat_fields()
                + (StateField("cnt", "i", 0), StateField("nbad", "i", self.w)) + self.int_stat_fields())

    def stat_fields(self) -> tuple[StateField, ...]:
        return ()

    def int_stat_fields(self) -> tuple[StateField, ...]:
        return ()


# ---------------------------------------------------------------------------
# sums and means
# ---------------------------------------------------------------------------
class Sum(Window):
    """Sum of the last w values."""

    name = "Sum"
    opcode = K.SUM

    def stat_fields(self):
        return _zeros("s", "c")  # compensated running sum

    def batch(self, x):
        return _rolling(x, self.w).sum().to_numpy()


class Mean(Sum):
    """Mean of the last w values."""

    name = "Mean"
    opcode = K.MEAN

    def batch(self, x):
        return _rolling(x, self.w).mean().to_numpy()


# ---------------------------------------------------------------------------
# second moments: Welford add/remove (numerically stable for price levels)
# ---------------------------------------------------------------------------
class Cov(Window):
    """Sample covariance (ddof=1) of the last w pairs (x, y)."""

    name = "Cov"
    opcode = K.COV
    n_inputs = 2

    def stat_fields(self):
        return _zeros("n", "mx", "my", "cxy", "mxx", "myy")  # count, means, co-moments

    def batch(self, x, y):
        return _rolling(x, self.w).cov(pd.DataFrame(y)).to_numpy()


class Corr(Cov):
    """Pearson correlation of the last w pairs (NaN if either is constant)."""

    name = "Corr"
    opcode = K.CORR

    def batch(self, x, y):
        joint = np.isnan(x) | np.isnan(y)
        xm, ym = np.where(joint, np.nan, x), np.where(joint, np.nan, y)
        const = _constant(_rolling(xm, self.w)) | _constant(_rolling(ym, self.w))
        return np.where(const, np.nan, _finite(_rolling(x, self.w).corr(pd.DataFrame(y)).to_numpy()))


class Var(Window):
    """Sample variance (ddof=1) of the last w values (0 for a constant window)."""

    name = "Var"
    opcode = K.VAR

    def __init__(self, x, w):
        if int(w) < 2:
            raise ValueError(f"{type(self).__name__} needs a window >= 2 (ddof=1), got {w!r}")
        super().__init__(x, w)

    def stat_fields(self):
        # Welford count, mean, M2; the last value (for runs of identical values)
        return _zeros("n", "m", "m2") + (StateField("last", "f", np.nan),)

    def int_stat_fields(self):
        return (StateField("run", "i", 0),)  # length of the current run of identical values

    def batch(self, x):
        return _rolling_var(x, self.w)


class Std(Var):
    """Sample standard deviation (ddof=1) of the last w values."""

    name = "Std"
    opcode = K.STD

    def batch(self, x):
        return np.sqrt(_rolling_var(x, self.w))


# ---------------------------------------------------------------------------
# skewness and slope: power sums / index-weighted sums
# ---------------------------------------------------------------------------
class Skew(Window):
    """Population skewness m3 / m2^1.5 of the last w values (NaN if m2 == 0)."""

    name = "Skew"
    opcode = K.SKEW

    def stat_fields(self):
        return _zeros("s1", "s2", "s3", "c1", "c2", "c3")  # compensated power sums

    def batch(self, x):
        def fn(win):
            d = win - win.mean(axis=2, keepdims=True)
            m2 = (d ** 2).mean(axis=2)
            m3 = (d ** 3).mean(axis=2)
            return np.where(m2 > 1e-14 * (win ** 2).mean(axis=2), m3 / m2 ** 1.5, np.nan)
        return _sliding(x, self.w, fn)


class Slope(Window):
    """OLS slope of the last w values against the bar index 0..w-1."""

    name = "Slope"
    opcode = K.SLOPE

    def __init__(self, x, w):
        if int(w) < 2:
            raise ValueError(f"Slope needs a window >= 2, got {w!r}")
        super().__init__(x, w)

    def stat_fields(self):
        return _zeros("s", "t")  # sum and index-weighted sum of the window

    def _weights(self):
        k = np.arange(self.w, dtype=float)
        return (k - k.mean()) / ((k - k.mean()) ** 2).sum()

    def batch(self, x):
        wts = self._weights()
        return _sliding(x, self.w, lambda win: win @ wts)


# ---------------------------------------------------------------------------
# order statistics: scans of the ring buffer
# ---------------------------------------------------------------------------
class Max(Window):
    """Maximum of the last w values."""

    name = "Max"
    opcode = K.EXTREME
    sign = 1.0

    def batch(self, x):
        return _rolling(x, self.w).max().to_numpy()

    def kernel_params(self):
        return self.w, self.sign


class Min(Max):
    """Minimum of the last w values."""

    name = "Min"
    sign = -1.0

    def batch(self, x):
        return _rolling(x, self.w).min().to_numpy()


class BarsSinceMax(Window):
    """Bars since the highest value of the last w (0 = now; ties -> most recent)."""

    name = "BarsSinceMax"
    opcode = K.BARS_SINCE
    sign = 1.0

    def batch(self, x):
        def fn(win):
            rev = win[..., ::-1] * self.sign  # age 0 first
            return np.argmax(rev, axis=2).astype(float)
        return _sliding(x, self.w, fn)

    def kernel_params(self):
        return self.w, self.sign


class BarsSinceMin(BarsSinceMax):
    """Bars since the lowest value of the last w (0 = now; ties -> most recent)."""

    name = "BarsSinceMin"
    sign = -1.0


class TsRank(Window):
    """Percentile rank (average ties, in (0, 1]) of the current value in the last w."""

    name = "TsRank"
    opcode = K.TSRANK

    def batch(self, x):
        return _rolling(x, self.w).rank(method="average", pct=True).to_numpy()


# ---------------------------------------------------------------------------
# exponential moving average: a recursion, evaluated the same way in both
# ---------------------------------------------------------------------------
class EMA(Op):
    """Exponential moving average, alpha = 2 / (span + 1), seeded with the first value.

    NaN inputs leave the average unchanged and yield NaN; the value is NaN
    until ``span`` valid inputs have been seen (warm-up).
    """

    name = "EMA"
    opcode = K.EMA

    def __init__(self, x: Op, span: int):
        if int(span) < 1:
            raise ValueError(f"EMA needs span >= 1, got {span!r}")
        self.children = (_const(x),)
        self.params = (int(span),)

    @property
    def lookback(self) -> int:
        return self.children[0].lookback + self.params[0] - 1

    def _kernel(self, y, n, x):
        a = 2.0 / (self.params[0] + 1.0)
        ok = ~np.isnan(x)
        y = np.where(ok, np.where(n == 0, x, a * x + (1.0 - a) * y), y)
        n = n + ok
        out = np.where(ok & (n >= self.params[0]), y, np.nan)
        return y, n, out

    def batch(self, x):
        out = np.full(x.shape, np.nan)
        y = np.zeros(x.shape[1])
        n = np.zeros(x.shape[1], np.int64)
        for k in range(x.shape[0]):
            y, n, out[k] = self._kernel(y, n, x[k])
        return out

    def kernel_params(self):
        return self.params[0], 0.0

    def state_fields(self):
        return (StateField("y", "f", 0.0), StateField("n", "i", 0))  # the average, valid inputs seen
