"""Tied predictions: a deterministic, non-alphabetical tie-break, and the share of ties.

A degenerate model (a tree ensemble stopped after one tree, a rounded score)
gives many names of a date the same prediction. A quantile book must still
choose among them. ``rank(method="first")`` chooses by row order, which on a
(date, symbol)-sorted index is the alphabetical order of the symbols: the long
leg of a constant model would be the first names of the alphabet, every date.

Here every per-date ordering is by (prediction, ``tie_key``), where
``tie_key`` is a 64-bit hash of the row's (date, symbol) pair:
``pandas.util.hash_pandas_object`` (SipHash-2-4 with pandas' fixed default key)
of the date as int64 nanoseconds since the epoch (UTC for tz-aware dates; other
date types are hashed as they are) and the symbol's text, combined. So the
tie-break is

- deterministic: no seed, no process state; the same on every run and machine
  (pandas has kept this hash unchanged across versions, though it does not
  promise so);
- independent of row order and of the date's storage unit (``[us]`` or ``[ns]``):
  it depends on the row's own (date, symbol) only;
- not alphabetical, and redrawn each date: tied names are ordered by a fixed
  pseudo-random permutation that differs from one date to the next.

Only rows with a finite prediction are ordered; NaN rows get no rank.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .panel import date_level, symbol_level


def tie_key(index: pd.MultiIndex) -> np.ndarray:
    """uint64 hash of each row's (date, symbol): the secondary sort key of every per-date order."""
    dates = index.get_level_values(date_level(index))
    if isinstance(dates, pd.DatetimeIndex):
        dates = dates.as_unit("ns").asi8
    syms = np.asarray(index.get_level_values(symbol_level(index)), dtype=object)
    frame = pd.DataFrame({"date": np.asarray(dates), "symbol": syms})
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _date_codes(index: pd.MultiIndex) -> np.ndarray:
    """Integer code of each row's date (any grouping code: equal dates, equal codes)."""
    lvl = date_level(index)
    if isinstance(index, pd.MultiIndex):
        codes = np.asarray(index.codes[index.names.index(lvl) if isinstance(lvl, str) else lvl])
        if len(codes) == 0 or codes.min() >= 0:
            return codes
    return pd.factorize(index.get_level_values(lvl))[0]


def _by_date_then_value(v: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Row order sorted by date code, then value (NaN last within a date): np.lexsort((v, codes)),
    done as a value sort followed by a stable sort of the (small-integer) date codes, ~4x faster."""
    order = np.argsort(v)
    return order[np.argsort(codes[order], kind="stable")]


def _group_starts(cs: np.ndarray) -> np.ndarray:
    """For sorted date codes, the position where each row's date group starts."""
    pos = np.arange(len(cs))
    return np.maximum.accumulate(np.where(np.r_[True, cs[1:] != cs[:-1]], pos, 0))


def ordered_rank(p: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Per date, the position 1..n of each finite prediction in ascending (p, tie_key) order.

    Returns ``(rank, n)``: ``rank`` is NaN where ``p`` is not finite; ``n`` is,
    on every row, the number of finite predictions of the row's date. The order
    is total, so ``n + 1 - rank`` is the descending order and a top-k set and a
    bottom-k set of one date never share a name when ``n >= 2k``. ``tie_key`` is
    only computed for the rows that tie (the order of the others does not need it).
    """
    v = p.to_numpy(dtype=float)
    ok = np.isfinite(v)
    v = np.where(ok, v, np.inf)
    codes = _date_codes(p.index)
    order = _by_date_then_value(np.where(ok, v, np.nan), codes)
    vs, cs = v[order], codes[order]
    same = (vs[1:] == vs[:-1]) & (cs[1:] == cs[:-1]) & ok[order][1:]
    tied = np.flatnonzero(np.r_[same, False] | np.r_[False, same])
    if len(tied):  # tied rows form contiguous (date, value) blocks: reorder them within their blocks
        sub = order[tied]
        order[tied] = sub[np.lexsort((tie_key(p.index[sub]), v[sub], codes[sub]))]
    rank = np.empty(len(v))
    rank[order] = np.arange(len(v)) - _group_starts(cs) + 1.0
    rank[~ok] = np.nan
    counts = np.bincount(codes[ok], minlength=codes.max() + 1 if len(codes) else 0)
    return pd.Series(rank, p.index), pd.Series(counts[codes].astype(float), p.index)


def average_rank(p: pd.Series) -> pd.Series:
    """Per-date ranks 1..n of the finite values, tied values sharing their average rank.

    Equal to ``p.groupby(date).rank(method="average")`` (NaN stays NaN and is
    not counted); the ranking of RankIC, where ties must not be broken at all.
    """
    v = p.to_numpy(dtype=float)
    ok = np.isfinite(v)
    codes = _date_codes(p.index)
    order = _by_date_then_value(np.where(ok, v, np.nan), codes)
    vs, cs = v[order], codes[order]
    n = len(v)
    new_group = np.r_[True, cs[1:] != cs[:-1]]
    new_block = new_group | np.r_[True, vs[1:] != vs[:-1]]  # NaN != NaN: each NaN alone
    block = np.cumsum(new_block) - 1
    first = np.flatnonzero(new_block)
    last = np.r_[first[1:], n] - 1
    rank = np.empty(n)
    rank[order] = (first[block] + last[block]) / 2.0 - _group_starts(cs) + 1.0
    rank[~ok] = np.nan
    return pd.Series(rank, p.index)


def tie_share(pred) -> tuple[pd.Series, float]:
    """Share of a date's predictions that equal at least one other prediction of that date.

    Per date, over the rows with a finite prediction (exact float equality, the
    equality any ranking sees): (rows whose value occurs more than once) / (rows).
    Dates with fewer than 2 finite predictions are left out. Returns the
    per-date Series (indexed by date, sorted) and its mean over dates (each date
    weighs the same). 0 = no ties; 1 = no prediction is unique on its date.
    """
    if isinstance(pred, pd.DataFrame):
        pred = pred.iloc[:, 0]
    p = pred.astype(float)
    p = p[np.isfinite(p.to_numpy())]
    dates = p.index.get_level_values(date_level(p.index))
    codes, uniq = pd.factorize(dates, sort=True)
    v = p.to_numpy()
    order = _by_date_then_value(v, codes)
    vs, cs = v[order], codes[order]
    same = (vs[1:] == vs[:-1]) & (cs[1:] == cs[:-1])  # row i equals row i+1 of the same date
    tied = np.r_[same, False] | np.r_[False, same]
    n = np.bincount(cs, minlength=len(uniq))
    share = np.bincount(cs, weights=tied, minlength=len(uniq)) / np.maximum(n, 1)
    out = pd.Series(share, index=pd.Index(uniq, name="date"), name="tie_share")[n >= 2]
    return out, float(out.mean()) if len(out) else float("nan")
