"""Windowed and recursive operators (see ``ops.py`` for the conventions).

Batch forms use pandas/numpy rolling kernels over the ``(L, N)`` panel;
incremental forms keep a ring buffer of the last ``w`` inputs per symbol slot
plus running statistics updated in O(1) (Neumaier-compensated sums, Welford
add/remove updates for second moments), or scan the ring buffer with one
vectorized numpy call (Max/Min/ArgMax/TsRank: O(w) but in C).

A window is valid only when its ``w`` most recent inputs are all present;
``nbad`` counts the missing (NaN or not yet seen) entries of the buffer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .ops import Op, State, _const, _finite, as_index, n_rows

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


def _constant(r) -> np.ndarray:
    """Windows whose values are all equal (exact, unlike a variance residue)."""
    return (r.max() == r.min()).to_numpy()


_CANCEL = 1e-4  # a second moment that shrank below this fraction lost >= 4 digits


def _exact_var(buf: np.ndarray):
    """(n, mean, M2) of the valid values of each buffer row, two-pass."""
    ok = ~np.isnan(buf)
    n = ok.sum(axis=1).astype(float)
    with np.errstate(all="ignore"):
        m = np.where(ok, buf, 0.0).sum(axis=1) / n
        d = np.where(ok, buf - m[:, None], 0.0)
    return n, np.nan_to_num(m), (d * d).sum(axis=1)


def _exact_cov(bx: np.ndarray, by: np.ndarray):
    """(n, mean x, mean y, Cxy, Mxx, Myy) of each row's valid pairs, two-pass."""
    ok = ~(np.isnan(bx) | np.isnan(by))
    n = ok.sum(axis=1).astype(float)
    with np.errstate(all="ignore"):
        mx = np.where(ok, bx, 0.0).sum(axis=1) / n
        my = np.where(ok, by, 0.0).sum(axis=1) / n
        dx = np.where(ok, bx - mx[:, None], 0.0)
        dy = np.where(ok, by - my[:, None], 0.0)
    return n, np.nan_to_num(mx), np.nan_to_num(my), (dx * dy).sum(axis=1), (dx * dx).sum(axis=1), (dy * dy).sum(axis=1)


def _neumaier(s, c, x):
    """Compensated s + x: returns the new (sum, compensation)."""
    t = s + x
    c = c + np.where(np.abs(s) >= np.abs(x), (s - t) + x, (x - t) + s)
    return t, c


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

    def init_state(self, n):
        st = {"cnt": np.zeros(n, np.int64), "nbad": np.full(n, self.w, np.int64)}
        for i in range(self.n_inputs):
            st[f"buf{i}"] = np.full((n, self.w), np.nan)
        st.update(self.init_stats(n))
        return st

    def init_stats(self, n) -> State:
        return {}

    def _push(self, st, rows, xs):
        """Write the new inputs into the ring buffers; return the evicted ones."""
        cnt = st["cnt"][rows]
        flat = as_index(rows) * self.w + cnt % self.w  # pairwise (row, pos) as flat indices
        olds = []
        bad_new = bad_old = None
        for i, x in enumerate(xs):
            buf = st[f"buf{i}"].reshape(-1)
            old = buf[flat]
            buf[flat] = x
            olds.append(old)
            bn, bo = np.isnan(x), np.isnan(old)
            bad_new = bn if bad_new is None else bad_new | bn
            bad_old = bo if bad_old is None else bad_old | bo
        st["nbad"][rows] += bad_new.view(np.int8) - bad_old.view(np.int8)
        st["cnt"][rows] = cnt + 1
        return olds, ~bad_new, ~bad_old

    def step(self, st, rows, *xs):
        olds, add, rem = self._push(st, rows, xs)
        val = self.update(st, rows, xs, olds, add, rem)
        val = np.where(st["nbad"][rows] == 0, val, np.nan)
        return _finite(val)

    def update(self, st, rows, xs, olds, add, rem):  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------------------
# sums and means
# ---------------------------------------------------------------------------
class Sum(Window):
    """Sum of the last w values."""

    name = "Sum"

    def init_stats(self, n):
        return {"s": np.zeros(n), "c": np.zeros(n)}

    def batch(self, x):
        return _rolling(x, self.w).sum().to_numpy()

    def _sum(self, st, rows, x, old, add, rem):
        s, c = st["s"][rows], st["c"][rows]
        s, c = _neumaier(s, c, np.where(add, x, 0.0))
        s, c = _neumaier(s, c, np.where(rem, -old, 0.0))
        empty = st["nbad"][rows] == self.w  # nothing valid left: reset drift
        s[empty] = 0.0
        c[empty] = 0.0
        # once per window cycle, re-sum the buffer exactly: rounding left by values that
        # have since left the window never outlives them (amortized O(1))
        cyc = st["cnt"][rows] % self.w == 0
        if cyc.any():
            s[cyc] = np.nansum(st["buf0"][as_index(rows)[cyc]], axis=1)
            c[cyc] = 0.0
        st["s"][rows], st["c"][rows] = s, c
        return s + c

    def update(self, st, rows, xs, olds, add, rem):
        return self._sum(st, rows, xs[0], olds[0], add, rem)


class Mean(Sum):
    """Mean of the last w values."""

    name = "Mean"

    def batch(self, x):
        return _rolling(x, self.w).mean().to_numpy()

    def update(self, st, rows, xs, olds, add, rem):
        return self._sum(st, rows, xs[0], olds[0], add, rem) / self.w


# ---------------------------------------------------------------------------
# second moments: Welford add/remove (numerically stable for price levels)
# ---------------------------------------------------------------------------
class Cov(Window):
    """Sample covariance (ddof=1) of the last w pairs (x, y)."""

    name = "Cov"
    n_inputs = 2

    def init_stats(self, n):
        z = lambda: np.zeros(n)  # noqa: E731
        return {"n": np.zeros(n), "mx": z(), "my": z(), "cxy": z(), "mxx": z(), "myy": z()}

    def batch(self, x, y):
        return _rolling(x, self.w).cov(pd.DataFrame(y)).to_numpy()

    def _moments(self, st, rows, xs, olds, add, rem):
        x, y = xs
        ox, oy = olds
        n, mx, my = st["n"][rows], st["mx"][rows], st["my"][rows]
        cxy, mxx, myy = st["cxy"][rows], st["mxx"][rows], st["myy"][rows]
        mxx0, myy0 = mxx.copy(), myy.copy()
        # remove the evicted pair (inverse Welford step)
        r = rem & (n > 1)
        n1 = np.where(r, n - 1, n)
        dx = ox - mx
        dy = oy - my
        mx_new = np.where(r, mx - dx / np.where(r, n1, 1), mx)
        my_new = np.where(r, my - dy / np.where(r, n1, 1), my)
        cxy = np.where(r, cxy - (ox - mx_new) * dy, cxy)
        mxx = np.where(r, mxx - (ox - mx_new) * dx, mxx)
        myy = np.where(r, myy - (oy - my_new) * dy, myy)
        one = rem & (n <= 1)
        n = np.where(one, 0.0, n1)
        mx = np.where(one, 0.0, mx_new)
        my = np.where(one, 0.0, my_new)
        cxy = np.where(one, 0.0, cxy)
        mxx = np.where(one, 0.0, mxx)
        myy = np.where(one, 0.0, myy)
        # add the new pair (Welford step)
        n = np.where(add, n + 1, n)
        dx = x - mx
        dy = y - my
        mx = np.where(add, mx + dx / np.where(add, n, 1), mx)
        my = np.where(add, my + dy / np.where(add, n, 1), my)
        cxy = np.where(add, cxy + dx * (y - my), cxy)
        mxx = np.where(add, mxx + dx * (x - mx), mxx)
        myy = np.where(add, myy + dy * (y - my), myy)
        mxx = np.maximum(mxx, 0.0)
        myy = np.maximum(myy, 0.0)
        lost = rem & ((mxx < _CANCEL * mxx0) | (myy < _CANCEL * myy0))
        if lost.any():  # an outlier left the window: re-derive those rows exactly
            idx = as_index(rows)[lost]
            n[lost], mx[lost], my[lost], cxy[lost], mxx[lost], myy[lost] = _exact_cov(
                st["buf0"][idx], st["buf1"][idx])
        for k, v in (("n", n), ("mx", mx), ("my", my), ("cxy", cxy), ("mxx", mxx), ("myy", myy)):
            st[k][rows] = v
        return n, cxy, mxx, myy

    def _push(self, st, rows, xs):
        # a pair counts only when both members are present
        x, y = xs
        joint = np.isnan(x) | np.isnan(y)
        xs = (np.where(joint, np.nan, x), np.where(joint, np.nan, y))
        return super()._push(st, rows, xs)

    def step(self, st, rows, *xs):
        olds, add, rem = self._push(st, rows, xs)
        x, y = xs
        joint = np.isnan(x) | np.isnan(y)
        xs = (np.where(joint, np.nan, x), np.where(joint, np.nan, y))
        val = self.update(st, rows, xs, olds, add, rem)
        return _finite(np.where(st["nbad"][rows] == 0, val, np.nan))

    def update(self, st, rows, xs, olds, add, rem):
        n, cxy, _, _ = self._moments(st, rows, xs, olds, add, rem)
        with np.errstate(all="ignore"):
            return cxy / (n - 1)


class Corr(Cov):
    """Pearson correlation of the last w pairs (NaN if either is constant)."""

    name = "Corr"

    def batch(self, x, y):
        joint = np.isnan(x) | np.isnan(y)
        xm, ym = np.where(joint, np.nan, x), np.where(joint, np.nan, y)
        const = _constant(_rolling(xm, self.w)) | _constant(_rolling(ym, self.w))
        return np.where(const, np.nan, _finite(_rolling(x, self.w).corr(pd.DataFrame(y)).to_numpy()))

    def update(self, st, rows, xs, olds, add, rem):
        n, cxy, mxx, myy = self._moments(st, rows, xs, olds, add, rem)
        bx, by = st["buf0"][rows], st["buf1"][rows]
        with np.errstate(all="ignore"):
            const = (bx.max(axis=1) == bx.min(axis=1)) | (by.max(axis=1) == by.min(axis=1))
            den = np.sqrt(mxx * myy)
            return np.where((den > 0) & ~const, cxy / den, np.nan)


class Var(Window):
    """Sample variance (ddof=1) of the last w values (0 for a constant window)."""

    name = "Var"

    def init_stats(self, n):
        return {"n": np.zeros(n), "m": np.zeros(n), "m2": np.zeros(n),
                "last": np.full(n, np.nan), "run": np.zeros(n, np.int64)}

    def __init__(self, x, w):
        if int(w) < 2:
            raise ValueError(f"{type(self).__name__} needs a window >= 2 (ddof=1), got {w!r}")
        super().__init__(x, w)

    def batch(self, x):
        r = _rolling(x, self.w)
        return np.where(_constant(r), 0.0, r.var().to_numpy())

    def _var(self, st, rows, x, old, add, rem):
        n, m, m2 = st["n"][rows], st["m"][rows], st["m2"][rows]
        m2_before = m2.copy()
        r = rem & (n > 1)
        n1 = np.where(r, n - 1, n)
        d = old - m
        m_new = np.where(r, m - d / np.where(r, n1, 1), m)
        m2 = np.where(r, m2 - (old - m_new) * d, m2)
        one = rem & (n <= 1)
        n = np.where(one, 0.0, n1)
        m = np.where(one, 0.0, m_new)
        m2 = np.where(one, 0.0, m2)
        n = np.where(add, n + 1, n)
        d = x - m
        m = np.where(add, m + d / np.where(add, n, 1), m)
        m2 = np.where(add, m2 + d * (x - m), m2)
        m2 = np.maximum(m2, 0.0)
        # removing an outlier cancels most digits of m2: re-derive those rows exactly
        lost = rem & (m2 < _CANCEL * m2_before)
        if lost.any():
            idx = as_index(rows)[lost]
            n[lost], m[lost], m2[lost] = _exact_var(st["buf0"][idx])
        # a run of w identical values has exactly zero variance (as in pandas)
        same = add & (x == st["last"][rows])
        run = np.where(same, st["run"][rows] + 1, np.where(add, 1, 0))
        st["last"][rows] = np.where(add, x, np.nan)
        st["run"][rows] = run
        st["n"][rows], st["m"][rows], st["m2"][rows] = n, m, m2
        with np.errstate(all="ignore"):
            var = m2 / (n - 1)
        return np.where(run >= self.w, 0.0, var)

    def update(self, st, rows, xs, olds, add, rem):
        return self._var(st, rows, xs[0], olds[0], add, rem)


class Std(Var):
    """Sample standard deviation (ddof=1) of the last w values."""

    name = "Std"

    def batch(self, x):
        r = _rolling(x, self.w)
        return np.where(_constant(r), 0.0, r.std().to_numpy())

    def update(self, st, rows, xs, olds, add, rem):
        return np.sqrt(self._var(st, rows, xs[0], olds[0], add, rem))


# ---------------------------------------------------------------------------
# skewness and slope: power sums / index-weighted sums
# ---------------------------------------------------------------------------
class Skew(Window):
    """Population skewness m3 / m2^1.5 of the last w values (NaN if m2 == 0)."""

    name = "Skew"

    def init_stats(self, n):
        return {f"s{k}": np.zeros(n) for k in (1, 2, 3)} | {f"c{k}": np.zeros(n) for k in (1, 2, 3)}

    def batch(self, x):
        def fn(win):
            d = win - win.mean(axis=2, keepdims=True)
            m2 = (d ** 2).mean(axis=2)
            m3 = (d ** 3).mean(axis=2)
            return np.where(m2 > 1e-14 * (win ** 2).mean(axis=2), m3 / m2 ** 1.5, np.nan)
        return _sliding(x, self.w, fn)

    def update(self, st, rows, xs, olds, add, rem):
        x, old = xs[0], olds[0]
        sums = []
        for k in (1, 2, 3):
            s, c = st[f"s{k}"][rows], st[f"c{k}"][rows]
            s, c = _neumaier(s, c, np.where(add, x ** k, 0.0))
            s, c = _neumaier(s, c, np.where(rem, -(old ** k), 0.0))
            empty = st["nbad"][rows] == self.w
            s[empty] = 0.0
            c[empty] = 0.0
            st[f"s{k}"][rows], st[f"c{k}"][rows] = s, c
            sums.append((s + c) / self.w)
        e1, e2, e3 = sums
        m2 = e2 - e1 ** 2
        m3 = e3 - 3 * e1 * e2 + 2 * e1 ** 3
        with np.errstate(all="ignore"):
            return np.where(m2 > 1e-14 * e2, m3 / np.abs(m2) ** 1.5, np.nan)


class Slope(Window):
    """OLS slope of the last w values against the bar index 0..w-1."""

    name = "Slope"

    def __init__(self, x, w):
        if int(w) < 2:
            raise ValueError(f"Slope needs a window >= 2, got {w!r}")
        super().__init__(x, w)

    def init_stats(self, n):
        return {"s": np.zeros(n), "t": np.zeros(n)}

    def _weights(self):
        k = np.arange(self.w, dtype=float)
        return (k - k.mean()) / ((k - k.mean()) ** 2).sum()

    def batch(self, x):
        wts = self._weights()
        return _sliding(x, self.w, lambda win: win @ wts)

    def update(self, st, rows, xs, olds, add, rem):
        w = self.w
        x, old = xs[0], olds[0]
        s, t = st["s"][rows], st["t"][rows]
        full = st["cnt"][rows] > w  # a value left the window
        xv = np.where(add, x, 0.0)
        ov = np.where(full & rem, old, 0.0)
        # shift all index weights down by one, drop the evicted value, add new at w-1
        t_new = np.where(full, t - (s - ov), t) + np.where(full, w - 1, st["cnt"][rows] - 1) * xv
        s_new = s - ov + xv
        st["s"][rows], st["t"][rows] = s_new, t_new
        tbar = (w - 1) / 2.0
        den = w * (w * w - 1) / 12.0
        return (t_new - tbar * s_new) / den if w > 1 else np.zeros(n_rows(rows))


# ---------------------------------------------------------------------------
# order statistics: vectorized scans of the ring buffer
# ---------------------------------------------------------------------------
class Max(Window):
    """Maximum of the last w values."""

    name = "Max"

    def batch(self, x):
        return _rolling(x, self.w).max().to_numpy()

    def update(self, st, rows, xs, olds, add, rem):
        with np.errstate(all="ignore"):
            return np.max(st["buf0"][rows], axis=1)


class Min(Window):
    """Minimum of the last w values."""

    name = "Min"

    def batch(self, x):
        return _rolling(x, self.w).min().to_numpy()

    def update(self, st, rows, xs, olds, add, rem):
        with np.errstate(all="ignore"):
            return np.min(st["buf0"][rows], axis=1)


class BarsSinceMax(Window):
    """Bars since the highest value of the last w (0 = now; ties -> most recent)."""

    name = "BarsSinceMax"
    sign = 1.0

    def batch(self, x):
        def fn(win):
            rev = win[..., ::-1] * self.sign  # age 0 first
            return np.argmax(rev, axis=2).astype(float)
        return _sliding(x, self.w, fn)

    def update(self, st, rows, xs, olds, add, rem):
        buf = st["buf0"][rows] * self.sign
        cnt = st["cnt"][rows]
        slots = np.arange(self.w)
        age = (cnt[:, None] - 1 - slots[None, :]) % self.w
        with np.errstate(all="ignore"):
            m = np.max(buf, axis=1)
        is_max = buf == m[:, None]
        return np.where(is_max, age, self.w).min(axis=1).astype(float)


class BarsSinceMin(BarsSinceMax):
    """Bars since the lowest value of the last w (0 = now; ties -> most recent)."""

    name = "BarsSinceMin"
    sign = -1.0


class TsRank(Window):
    """Percentile rank (average ties, in (0, 1]) of the current value in the last w."""

    name = "TsRank"

    def batch(self, x):
        return _rolling(x, self.w).rank(method="average", pct=True).to_numpy()

    def update(self, st, rows, xs, olds, add, rem):
        buf = st["buf0"][rows]
        x = xs[0][:, None]
        less = (buf < x).sum(axis=1)
        eq = (buf == x).sum(axis=1)
        return (less + (eq + 1) / 2.0) / self.w


# ---------------------------------------------------------------------------
# exponential moving average: a recursion, evaluated the same way in both
# ---------------------------------------------------------------------------
class EMA(Op):
    """Exponential moving average, alpha = 2 / (span + 1), seeded with the first value.

    NaN inputs leave the average unchanged and yield NaN; the value is NaN
    until ``span`` valid inputs have been seen (warm-up).
    """

    name = "EMA"

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

    def init_state(self, n_slots):
        return {"y": np.zeros(n_slots), "n": np.zeros(n_slots, np.int64)}

    def step(self, st, rows, x):
        y, n, out = self._kernel(st["y"][rows], st["n"][rows], x)
        st["y"][rows], st["n"][rows] = y, n
        return out
