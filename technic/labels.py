"""Labels: the ONLY module of Technic that looks forward in time.

Conventions (input: canonical bars as `technic.data.bars.load_bars` returns):

* **Execution lag.** A score published at the close of bar t can be traded at bar t+1 at the
  earliest. With ``lag`` L (default :data:`DEFAULT_LAG` = 1) the label of (t, s) is the return
  earned from the close of t+L to the close of t+L+h, where t+k is the k-th next bar **of that
  symbol's own bar sequence** (bars, not calendar days: a gap in the symbol's history is
  skipped over, as a trader holding the position would experience):
  ``fwd_ret_h = close[t+L+h] / close[t+L] - 1``. ``lag=0`` is the (optimistic) close-t entry.
  NaN when fewer than L+h later bars exist, or either close is NaN / non-positive.
  Prices are split- but not dividend-adjusted in the dev data: these are price returns.
* ``excess_h`` = ``fwd_ret_h`` minus the cross-sectional MEDIAN of ``fwd_ret_h`` at that
  date over the symbols that have a value (NaN stays NaN).
* ``rank_h`` = cross-sectional percentile rank of ``fwd_ret_h`` at that date, in (0, 1],
  ``pandas.rank(pct=True, method="average")`` over the symbols with a value.

Both functions return frames indexed by (date, symbol), sorted, one row per input bar.
Features must never import this module; labels at date t use bars up to t+L+h, so any
training split must purge at least L+h bars before a validation window
(:func:`purge_bars`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from technic.errors import DataError

__all__ = ["DEFAULT_LAG", "forward_returns", "make_labels", "label_columns", "purge_bars"]

DEFAULT_LAG = 1


def purge_bars(horizons, lag: int = DEFAULT_LAG) -> int:
    """Bars a label at t looks ahead: ``max(h) + lag`` (the walk-forward purge must be at least this)."""
    return int(max(int(h) for h in horizons)) + int(lag)


def _check(bars: pd.DataFrame, horizons, lag) -> tuple[tuple[int, ...], int]:
    missing = [c for c in ("date", "symbol", "close") if c not in bars.columns]
    if missing:
        raise DataError(f"labels: bars lack column(s) {', '.join(missing)}")
    hs = tuple(int(h) for h in horizons)
    if not hs or any(h <= 0 for h in hs):
        raise DataError(f"labels: horizons must be positive bar counts, got {tuple(horizons)}")
    if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 0:
        raise DataError(f"labels: lag must be a whole number of bars >= 0, got {lag!r}")
    dup = bars.duplicated(["symbol", "date"], keep=False)
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"labels: duplicate bar ({bars['symbol'].iat[i]}, {bars['date'].iat[i]}); "
                        "clean the bars first (technic.data.bars.clean_bars)")
    return hs, int(lag)


def label_columns(horizons=(5, 10)) -> list[str]:
    """Column names `make_labels` produces, in order."""
    return [f"{k}_{h}" for h in horizons for k in ("fwd_ret", "excess", "rank")]


def forward_returns(bars: pd.DataFrame, horizons=(5, 10), lag: int = DEFAULT_LAG) -> pd.DataFrame:
    """``fwd_ret_h`` (close t+lag -> close t+lag+h) for each horizon, indexed by (date, symbol)."""
    hs, lag = _check(bars, horizons, lag)
    b = pd.DataFrame({
        "date": bars["date"].to_numpy().astype("datetime64[ns]"),
        "symbol": bars["symbol"].astype(str).to_numpy(),
        "close": bars["close"].to_numpy(dtype="float64"),
    }).sort_values(["symbol", "date"], kind="mergesort")
    close = b["close"].where(b["close"] > 0)
    grp = close.groupby(b["symbol"].to_numpy(), sort=False)
    entry = grp.shift(-lag) if lag else close
    out = pd.DataFrame({"date": b["date"], "symbol": b["symbol"]})
    for h in hs:
        out[f"fwd_ret_{h}"] = grp.shift(-(lag + h)) / entry - 1.0
    out = out.set_index(["date", "symbol"]).sort_index()
    return out


def make_labels(bars: pd.DataFrame, horizons=(5, 10), lag: int = DEFAULT_LAG) -> pd.DataFrame:
    """``fwd_ret_h``, ``excess_h`` and ``rank_h`` per horizon, indexed by (date, symbol)."""
    fr = forward_returns(bars, horizons, lag)
    dates = fr.index.get_level_values("date")
    out = pd.DataFrame(index=fr.index)
    for h in tuple(int(h) for h in horizons):
        r = fr[f"fwd_ret_{h}"]
        g = r.groupby(dates, sort=False)
        out[f"fwd_ret_{h}"] = r
        out[f"excess_{h}"] = r - g.transform("median")
        out[f"rank_{h}"] = g.rank(pct=True, method="average")
    out.attrs["lag"] = int(lag)
    return out
