"""The compiled step form of every operator, and the loop that runs a whole plan.

One symbol slot's state is one row of two arrays: ``f`` (float64) and ``i``
(int64). Each stateful node owns a fixed range of each row, starting at its
offsets ``fo``/``io``, laid out in the order of the operator's
``state_fields()`` (``ops.py``/``rolling.py``); the kernels below read that
layout and nothing else. A kernel updates one slot with one new input (or
pair) and returns the node's new value, as scalar code: the value of a slot
depends only on its own state and inputs, never on which other slots are in
the same call, so one symbol per call and many symbols per call give
bit-identical results by construction.

``run_plan`` evaluates a whole program (``plan.StepPlan``): for each slot in
``rows``, every node in topological order, dispatching on the node's
opcode. That is one compiled call per update instead of a few thousand numpy
calls, which is what makes a single-symbol update cheap.

The maths are those of the batch forms (see ``rolling.py`` for the
conventions): a window is valid only when its ``w`` most recent inputs are
present (``nbad`` counts the missing ones); running sums are
Neumaier-compensated and re-summed exactly once per window cycle; second
moments use Welford add/remove updates, re-derived exactly when removing an
outlier cancelled most of their digits; results that are not finite become
NaN. Everything compiles with ``error_model="numpy"`` (division by zero gives
inf/NaN as in numpy, never an exception) and without fast-math, so IEEE
semantics hold.

All compiled code lives in this one module on purpose: numba's on-disk cache
is invalidated by changes to the file that defines a function, not to the
files it calls.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_jit = njit(cache=True, error_model="numpy", nogil=True)

NAN = np.nan
INF = np.inf
CANCEL = 1e-4  # a second moment that shrank below this fraction lost >= 4 digits

# opcodes: leaves, elementwise (stateless, <= LAST_ELEMENTWISE), then stateful operators
FIELD, CONST = 0, 1
ADD, SUB, MUL, DIV, LOG, ABS, SQRT, SIGN, GREATER, LESS, GT, LT, EQ, EXP, POWER = range(2, 17)
LAST_ELEMENTWISE = POWER
REF, SUM, MEAN, VAR, STD, COV, CORR, SKEW, SLOPE, EXTREME, BARS_SINCE, TSRANK, EMA = range(20, 33)


# ---------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------
@_jit
def finite(v):
    return NAN if math.isinf(v) else v


@_jit
def elementwise(op, a, b, p):
    """One stateless operator on scalars (NaN propagates; non-finite -> NaN)."""
    if op == DIV:
        v = NAN if b == 0.0 else a / b
    elif op == SUB:
        v = a - b
    elif op == MUL:
        v = a * b
    elif op == ADD:
        v = a + b
    elif op == LOG:
        v = math.log(a) if a > 0.0 else NAN
    elif op == SQRT:
        v = math.sqrt(a) if a >= 0.0 else NAN
    elif op == GREATER:
        v = NAN if (math.isnan(a) or math.isnan(b)) else (a if a >= b else b)
    elif op == LESS:
        v = NAN if (math.isnan(a) or math.isnan(b)) else (a if a <= b else b)
    elif op == ABS:
        v = abs(a)
    elif op == GT:
        v = NAN if (math.isnan(a) or math.isnan(b)) else (1.0 if a > b else 0.0)
    elif op == LT:
        v = NAN if (math.isnan(a) or math.isnan(b)) else (1.0 if a < b else 0.0)
    elif op == EQ:
        v = NAN if (math.isnan(a) or math.isnan(b)) else (1.0 if a == b else 0.0)
    elif op == SIGN:
        v = NAN if math.isnan(a) else (1.0 if a > 0.0 else (-1.0 if a < 0.0 else 0.0))
    elif op == EXP:
        v = math.exp(a)
    else:  # POWER
        v = a ** p
    return finite(v)


# ---------------------------------------------------------------------------
# ring buffers: Ref and the window push
#   Window ints: cnt (bars seen), nbad (missing entries in the window), [extra ints]
# ---------------------------------------------------------------------------
@_jit
def step_ref(f, fo, i, io, n, x):
    """Ref: floats buf[n]; ints cnt. Returns the value n bars ago."""
    cnt = i[io]
    pos = fo + cnt % n
    old = f[pos]
    f[pos] = x
    i[io] = cnt + 1
    return old


@_jit
def push(f, fo, i, io, w, x):
    """Write x into the window buffer at fo; update cnt/nbad; return the evicted value."""
    cnt = i[io]
    pos = fo + cnt % w
    old = f[pos]
    f[pos] = x
    i[io + 1] += int(math.isnan(x)) - int(math.isnan(old))
    i[io] = cnt + 1
    return old


@_jit
def neumaier(s, c, x):
    """Compensated s + x: returns the new (sum, compensation)."""
    t = s + x
    if abs(s) >= abs(x):
        c += (s - t) + x
    else:
        c += (x - t) + s
    return t, c


@_jit
def window_value(v, i, io):
    """A window's value only when all w inputs are present; never inf."""
    return finite(v) if i[io + 1] == 0 else NAN


# ---------------------------------------------------------------------------
# Sum / Mean: floats buf0[w], s, c
# ---------------------------------------------------------------------------
@_jit
def running_sum(f, fo, i, io, w, x):
    """Push x and update the window's compensated running sum; return the sum."""
    old = push(f, fo, i, io, w, x)
    so = fo + w
    s, c = neumaier(f[so], f[so + 1], 0.0 if math.isnan(x) else x)
    s, c = neumaier(s, c, 0.0 if math.isnan(old) else -old)
    if i[io + 1] == w:  # nothing valid left: reset drift
        s, c = 0.0, 0.0
    if i[io] % w == 0:  # once per window cycle, re-sum the buffer exactly (amortized O(1)): rounding
        s, c = 0.0, 0.0  # left by values that have since left the window never outlives them
        for k in range(w):
            v = f[fo + k]
            if not math.isnan(v):
                s, c = neumaier(s, c, v)
    f[so], f[so + 1] = s, c
    return s + c


@_jit
def step_sum(f, fo, i, io, w, x):
    return window_value(running_sum(f, fo, i, io, w, x), i, io)


@_jit
def step_mean(f, fo, i, io, w, x):
    return window_value(running_sum(f, fo, i, io, w, x) / w, i, io)


# ---------------------------------------------------------------------------
# Var / Std: floats buf0[w], n, m, m2, last; ints cnt, nbad, run
# ---------------------------------------------------------------------------
@_jit
def exact_var(f, fo, w):
    """(n, mean, M2) of the valid values of a buffer, two-pass."""
    n, s = 0, 0.0
    for k in range(w):
        v = f[fo + k]
        if not math.isnan(v):
            n += 1
            s += v
    if n == 0:
        return 0.0, 0.0, 0.0
    m = s / n
    m2 = 0.0
    for k in range(w):
        v = f[fo + k]
        if not math.isnan(v):
            m2 += (v - m) * (v - m)
    return float(n), m, m2


@_jit
def moments_var(f, fo, i, io, w, x):
    """Welford add/remove update of the window's variance; returns the sample variance."""
    old = push(f, fo, i, io, w, x)
    add, rem = not math.isnan(x), not math.isnan(old)
    so = fo + w
    n, m, m2 = f[so], f[so + 1], f[so + 2]
    m2_before = m2
    if rem and n > 1:  # remove the evicted value (inverse Welford step)
        n1 = n - 1
        d = old - m
        m = m - d / n1
        m2 = m2 - (old - m) * d
        n = n1
    elif rem:
        n, m, m2 = 0.0, 0.0, 0.0
    if add:  # add the new value (Welford step)
        n = n + 1
        d = x - m
        m = m + d / n
        m2 = m2 + d * (x - m)
    if m2 < 0.0:
        m2 = 0.0
    if rem and m2 < CANCEL * m2_before:  # an outlier left: re-derive exactly
        n, m, m2 = exact_var(f, fo, w)
    # a run of w identical values has exactly zero variance (as in pandas)
    run = i[io + 2]
    run = (run + 1 if x == f[so + 3] else 1) if add else 0
    f[so + 3] = x if add else NAN
    i[io + 2] = run
    f[so], f[so + 1], f[so + 2] = n, m, m2
    return 0.0 if run >= w else m2 / (n - 1)


@_jit
def step_var(f, fo, i, io, w, x):
    return window_value(moments_var(f, fo, i, io, w, x), i, io)


@_jit
def step_std(f, fo, i, io, w, x):
    return window_value(np.sqrt(moments_var(f, fo, i, io, w, x)), i, io)


# ---------------------------------------------------------------------------
# Cov / Corr: floats buf0[w], buf1[w], n, mx, my, cxy, mxx, myy
# ---------------------------------------------------------------------------
@_jit
def exact_cov(f, fo, w):
    """(n, mean x, mean y, Cxy, Mxx, Myy) of the valid pairs of both buffers, two-pass."""
    n, sx, sy = 0, 0.0, 0.0
    for k in range(w):
        a, b = f[fo + k], f[fo + w + k]
        if not (math.isnan(a) or math.isnan(b)):
            n += 1
            sx += a
            sy += b
    if n == 0:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    mx, my = sx / n, sy / n
    cxy, mxx, myy = 0.0, 0.0, 0.0
    for k in range(w):
        a, b = f[fo + k], f[fo + w + k]
        if not (math.isnan(a) or math.isnan(b)):
            cxy += (a - mx) * (b - my)
            mxx += (a - mx) * (a - mx)
            myy += (b - my) * (b - my)
    return float(n), mx, my, cxy, mxx, myy


@_jit
def moments_cov(f, fo, i, io, w, x, y):
    """Push a pair (present only when both members are) and update the co-moments."""
    if math.isnan(x) or math.isnan(y):
        x, y = NAN, NAN
    cnt = i[io]
    px, py = fo + cnt % w, fo + w + cnt % w
    ox, oy = f[px], f[py]
    f[px], f[py] = x, y
    add, rem = not math.isnan(x), not (math.isnan(ox) or math.isnan(oy))
    i[io + 1] += int(not add) - int(not rem)
    i[io] = cnt + 1
    so = fo + 2 * w
    n, mx, my, cxy, mxx, myy = f[so], f[so + 1], f[so + 2], f[so + 3], f[so + 4], f[so + 5]
    mxx0, myy0 = mxx, myy
    if rem and n > 1:  # remove the evicted pair (inverse Welford step)
        n1 = n - 1
        dx, dy = ox - mx, oy - my
        mx = mx - dx / n1
        my = my - dy / n1
        cxy = cxy - (ox - mx) * dy
        mxx = mxx - (ox - mx) * dx
        myy = myy - (oy - my) * dy
        n = n1
    elif rem:
        n, mx, my, cxy, mxx, myy = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if add:  # add the new pair (Welford step)
        n = n + 1
        dx, dy = x - mx, y - my
        mx = mx + dx / n
        my = my + dy / n
        cxy = cxy + dx * (y - my)
        mxx = mxx + dx * (x - mx)
        myy = myy + dy * (y - my)
    if mxx < 0.0:
        mxx = 0.0
    if myy < 0.0:
        myy = 0.0
    if rem and (mxx < CANCEL * mxx0 or myy < CANCEL * myy0):  # an outlier left: re-derive exactly
        n, mx, my, cxy, mxx, myy = exact_cov(f, fo, w)
    f[so], f[so + 1], f[so + 2], f[so + 3], f[so + 4], f[so + 5] = n, mx, my, cxy, mxx, myy
    return n, cxy, mxx, myy


@_jit
def step_cov(f, fo, i, io, w, x, y):
    n, cxy, _, _ = moments_cov(f, fo, i, io, w, x, y)
    return window_value(cxy / (n - 1), i, io)


@_jit
def is_constant(f, fo, w):
    """All w buffer values equal (exact, unlike a variance residue); buffer has no NaN."""
    v0 = f[fo]
    for k in range(1, w):
        if f[fo + k] != v0:
            return False
    return True


@_jit
def step_corr(f, fo, i, io, w, x, y):
    n, cxy, mxx, myy = moments_cov(f, fo, i, io, w, x, y)
    if i[io + 1] != 0:
        return NAN
    den = np.sqrt(mxx * myy)
    if den > 0.0 and not (is_constant(f, fo, w) or is_constant(f, fo + w, w)):
        return finite(cxy / den)
    return NAN


# ---------------------------------------------------------------------------
# Skew: floats buf0[w], s1, s2, s3, c1, c2, c3 (compensated power sums)
# ---------------------------------------------------------------------------
@_jit
def step_skew(f, fo, i, io, w, x):
    old = push(f, fo, i, io, w, x)
    add, rem = not math.isnan(x), not math.isnan(old)
    so = fo + w
    empty = i[io + 1] == w
    xp, op_ = 1.0, 1.0
    e1 = e2 = e3 = 0.0
    for k in range(3):
        xp *= x
        op_ *= old
        s, c = neumaier(f[so + k], f[so + 3 + k], xp if add else 0.0)
        s, c = neumaier(s, c, -op_ if rem else 0.0)
        if empty:
            s, c = 0.0, 0.0
        f[so + k], f[so + 3 + k] = s, c
        e = (s + c) / w
        if k == 0:
            e1 = e
        elif k == 1:
            e2 = e
        else:
            e3 = e
    m2 = e2 - e1 * e1
    m3 = e3 - 3 * e1 * e2 + 2 * (e1 * e1 * e1)
    return window_value(m3 / abs(m2) ** 1.5 if m2 > 1e-14 * e2 else NAN, i, io)


# ---------------------------------------------------------------------------
# Slope: floats buf0[w], s (sum), t (index-weighted sum)
# ---------------------------------------------------------------------------
@_jit
def step_slope(f, fo, i, io, w, x):
    old = push(f, fo, i, io, w, x)
    add, rem = not math.isnan(x), not math.isnan(old)
    so = fo + w
    s, t = f[so], f[so + 1]
    cnt = i[io]
    full = cnt > w  # a value left the window
    xv = x if add else 0.0
    ov = old if (full and rem) else 0.0
    # shift all index weights down by one, drop the evicted value, add the new one at w-1
    if full:
        t = t - (s - ov) + (w - 1) * xv
    else:
        t = t + (cnt - 1) * xv
    s = s - ov + xv
    f[so], f[so + 1] = s, t
    tbar = (w - 1) / 2.0
    den = w * (w * w - 1) / 12.0
    return window_value((t - tbar * s) / den, i, io)


# ---------------------------------------------------------------------------
# order statistics: scans of buf0[w] (only when the window is complete)
# ---------------------------------------------------------------------------
@_jit
def signed_max(f, fo, w, sign):
    """max(sign * buffer): the max (sign 1) or minus the min (sign -1) of a window without NaN."""
    best = sign * f[fo]
    for k in range(1, w):
        v = sign * f[fo + k]
        if v > best:
            best = v
    return best


@_jit
def step_extreme(f, fo, i, io, w, x, sign):
    """Max (sign 1) or Min (sign -1) of the window."""
    push(f, fo, i, io, w, x)
    if i[io + 1] != 0:
        return NAN
    return finite(sign * signed_max(f, fo, w, sign))


@_jit
def step_bars_since(f, fo, i, io, w, x, sign):
    """Bars since the window's max (sign 1) or min (sign -1); ties -> most recent."""
    push(f, fo, i, io, w, x)
    if i[io + 1] != 0:
        return NAN
    best = signed_max(f, fo, w, sign)
    last = i[io] - 1  # position count of the newest value
    age = w
    for k in range(w):
        if sign * f[fo + k] == best:
            a = (last - k) % w
            if a < age:
                age = a
    return float(age)


@_jit
def step_tsrank(f, fo, i, io, w, x):
    push(f, fo, i, io, w, x)
    if i[io + 1] != 0:
        return NAN
    less, eq = 0, 0
    for k in range(w):
        v = f[fo + k]
        if v < x:
            less += 1
        elif v == x:
            eq += 1
    return (less + (eq + 1) / 2.0) / w


# ---------------------------------------------------------------------------
# EMA: floats y; ints n (valid inputs seen)
# ---------------------------------------------------------------------------
@_jit
def step_ema(f, fo, i, io, span, x):
    if math.isnan(x):
        return NAN  # the average is unchanged
    a = 2.0 / (span + 1.0)
    n = i[io]
    y = x if n == 0 else a * x + (1.0 - a) * f[fo]
    f[fo] = y
    i[io] = n + 1
    return y if n + 1 >= span else NAN


# ---------------------------------------------------------------------------
# the whole program
# ---------------------------------------------------------------------------
@_jit
def run_plan(code, ch0, ch1, ip, fp, fo, io, outs, F, I, rows, X, out):
    """Feed row r of X to slot rows[r] for every node; write the outputs to out[r]."""
    n_nodes = code.shape[0]
    vals = np.empty(n_nodes)
    for r in range(rows.shape[0]):
        f = F[rows[r]]
        i = I[rows[r]]
        for j in range(n_nodes):
            op = code[j]
            a = vals[ch0[j]]
            if op == FIELD:
                v = X[r, ip[j]]
            elif op == CONST:
                v = fp[j]
            elif op <= LAST_ELEMENTWISE:
                v = elementwise(op, a, vals[ch1[j]], fp[j])
            elif op == MEAN:
                v = step_mean(f, fo[j], i, io[j], ip[j], a)
            elif op == REF:
                v = step_ref(f, fo[j], i, io[j], ip[j], a)
            elif op == STD:
                v = step_std(f, fo[j], i, io[j], ip[j], a)
            elif op == SUM:
                v = step_sum(f, fo[j], i, io[j], ip[j], a)
            elif op == EMA:
                v = step_ema(f, fo[j], i, io[j], ip[j], a)
            elif op == EXTREME:
                v = step_extreme(f, fo[j], i, io[j], ip[j], a, fp[j])
            elif op == SLOPE:
                v = step_slope(f, fo[j], i, io[j], ip[j], a)
            elif op == TSRANK:
                v = step_tsrank(f, fo[j], i, io[j], ip[j], a)
            elif op == CORR:
                v = step_corr(f, fo[j], i, io[j], ip[j], a, vals[ch1[j]])
            elif op == COV:
                v = step_cov(f, fo[j], i, io[j], ip[j], a, vals[ch1[j]])
            elif op == VAR:
                v = step_var(f, fo[j], i, io[j], ip[j], a)
            elif op == SKEW:
                v = step_skew(f, fo[j], i, io[j], ip[j], a)
            elif op == BARS_SINCE:
                v = step_bars_since(f, fo[j], i, io[j], ip[j], a, fp[j])
            else:
                v = NAN
            vals[j] = v
        for q in range(outs.shape[0]):
            out[r, q] = vals[outs[q]]


# ---------------------------------------------------------------------------
# cross-sectional ranks (models.preprocess.average_ranks)
# ---------------------------------------------------------------------------
@_jit
def _assign_tie_ranks(x, o, m, out):
    """``out[o[q]]`` = 1-based average rank of sorted position q < m of ``x`` (``o``: its argsort): a tie
    block at positions a..b gets (a + b) / 2 + 1, exact in float64, whatever the sort's stability."""
    a = 0
    while a < m:
        b = a
        va = x[o[a]]
        while b + 1 < m and x[o[b + 1]] == va:
            b += 1
        r = (a + b) / 2.0 + 1.0
        for q in range(a, b + 1):
            out[o[q]] = r
        a = b + 1


@_jit
def average_ranks_sorted(XT, order):
    """Per row of ``XT`` (p, k) - one column of the caller's matrix per row - 1-based average ranks
    of its finite entries, NaN elsewhere, given ``order = argsort(XT, axis=1)`` with every non-finite
    entry of ``XT`` already +inf (so they sort last; numpy sorts arrays holding NaN much slower).
    Returned as (k, p). The sort is numpy's (faster than a sort inside the compiled loop); this pass
    only walks the sorted order once."""
    p, k = XT.shape
    R = np.full((k, p), NAN)
    for j in range(p):
        x = XT[j]
        o = order[j]
        m = 0
        while m < k and x[o[m]] < INF:   # the finite entries come first
            m += 1
        _assign_tie_ranks(x, o, m, R[:, j])
    return R


@_jit
def gauss_from_ranks(R, table, offsets):
    """``table[offsets[j] + 2 r - 2]`` for every average rank ``r`` of column ``j`` of ``R`` (k, p), NaN
    where ``R`` is NaN: ranks are the halves ``(a + b) / 2 + 1`` of ``_assign_tie_ranks``, so ``2 r - 2``
    is the exact integer ``a + b``; ``table`` holds, per column count, one value per possible rank
    (``models.preprocess.rank_gauss``)."""
    k, p = R.shape
    out = np.empty((k, p))
    for i in range(k):
        for j in range(p):
            r = R[i, j]
            out[i, j] = NAN if r != r else table[offsets[j] + int(2.0 * r) - 2]
    return out


@_jit
def tie_average_ranks(v, order):
    """1-based average ranks of ``v`` (no NaN; +-inf are values) given ``order = argsort(v)``."""
    R = np.empty(v.shape[0])
    _assign_tie_ranks(v, order, v.shape[0], R)
    return R
