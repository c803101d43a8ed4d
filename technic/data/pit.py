"""Point-in-time as-of joins of slow data onto bars.

* :func:`asof_fundamentals`: for each bar (symbol, date), the latest fundamentals row of the
  same symbol with ``available_from <= date`` (never one with ``available_from > date``);
  among rows sharing an ``available_from`` the one with the latest ``period_end`` wins.
* :func:`asof_alt`: for each bar and field, the latest non-NaN alt value of the same symbol
  with alt ``date <= bar date`` (a forward-filled step function); the last record wins
  when a (date, symbol, field) repeats.

Both return frames aligned row for row with ``bars`` (same index), NaN where nothing is known
yet. Vectorized with ``pd.merge_asof(by="symbol")``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from technic.data.alt import ALT_FIELDS
from technic.data.fundamentals import FUNDAMENTAL_FIELDS

__all__ = ["asof_fundamentals", "asof_alt"]


def _left(bars: pd.DataFrame) -> pd.DataFrame:
    left = pd.DataFrame({
        "_date": bars["date"].to_numpy().astype("datetime64[ns]"),
        "symbol": bars["symbol"].astype(str).to_numpy(),
        "_pos": np.arange(len(bars)),
    })
    return left.sort_values("_date", kind="mergesort")


def _join(bars: pd.DataFrame, right: pd.DataFrame, fields) -> pd.DataFrame:
    """right: columns _date (sorted), symbol, fields. Backward as-of by symbol."""
    left = _left(bars)
    right = right.astype({"symbol": "str"})
    left = left.astype({"symbol": "str"})
    m = pd.merge_asof(left, right, on="_date", by="symbol", direction="backward",
                      allow_exact_matches=True)
    out = np.full((len(bars), len(fields)), np.nan)
    if len(m):
        out[m["_pos"].to_numpy()] = m[list(fields)].to_numpy(dtype="float64")
    return pd.DataFrame(out, index=bars.index, columns=list(fields))


def asof_fundamentals(bars: pd.DataFrame, fundamentals: pd.DataFrame,
                      fields=FUNDAMENTAL_FIELDS) -> pd.DataFrame:
    """Fundamentals known at each bar's date, aligned with ``bars`` (same index)."""
    fields = list(fields)
    f = fundamentals.dropna(subset=["available_from"])
    for c in fields:
        if c not in f.columns:
            f = f.assign(**{c: np.nan})
    r = pd.DataFrame({
        "_date": f["available_from"].to_numpy().astype("datetime64[ns]"),
        "_pe": f["period_end"].to_numpy().astype("datetime64[ns]"),
        "symbol": f["symbol"].astype(str).to_numpy(),
    })
    for c in fields:
        r[c] = f[c].to_numpy(dtype="float64")
    # one row per (symbol, available_from): the latest period_end (then the later file row)
    r = r.sort_values(["symbol", "_date", "_pe"], kind="mergesort")
    r = r.drop_duplicates(["symbol", "_date"], keep="last")
    r = r.drop(columns="_pe").sort_values("_date", kind="mergesort")
    return _join(bars, r, fields)


def asof_alt(bars: pd.DataFrame, alt: pd.DataFrame, fields=ALT_FIELDS) -> pd.DataFrame:
    """Alt-data values known at each bar's date, one column per field, aligned with ``bars``."""
    fields = list(fields)
    out = pd.DataFrame(np.nan, index=bars.index, columns=fields)
    a = alt.dropna(subset=["value", "date"])
    for fld in fields:
        sub = a[a["field"].astype(str) == fld]
        if sub.empty:
            continue
        r = pd.DataFrame({
            "_date": sub["date"].to_numpy().astype("datetime64[ns]"),
            "symbol": sub["symbol"].astype(str).to_numpy(),
            fld: sub["value"].to_numpy(dtype="float64"),
        })
        r = r.drop_duplicates(["symbol", "_date"], keep="last").sort_values("_date", kind="mergesort")
        out[fld] = _join(bars, r, [fld])[fld]
    return out
