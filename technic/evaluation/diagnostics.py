"""Signal diagnostics of the tear sheet: monthly IC, quantile and spread curves, rank
autocorrelation, IC decay over label horizons, partial years, tie share.

Same conventions as ``metrics.py``: pure, NaN-aware functions on pandas objects
indexed by a (date, symbol) MultiIndex; a (date, symbol) pair is used only when
every input it needs is finite; statistics are computed per date (one
cross-section) first, then aggregated over dates, each date weighing the same.
Quantile membership and long-short legs order names by (prediction,
``ties.tie_key``), so ties are broken by a hash of (date, symbol), never by the
symbol's name.

Definitions:

- ``monthly_ic``: mean (or count) of the daily IC over the days of each
  calendar month; rows = year, columns = month 1..12.
- ``quantile_cumulative_returns``: for each prediction quantile, the cumulative
  return of the equal-weight quantile portfolio held ``horizon`` bars and
  rebalanced every ``horizon`` dates, averaged over the ``horizon`` staggered
  start phases (``portfolio.staggered_wealth``).
- ``spread_series``: the top-minus-bottom book of ``portfolio.long_short_books``
  per rebalance date and its staggered cumulative product.
- ``rank_autocorrelation``: per date t, the Spearman correlation between the
  predictions of t and those of the date ``lag`` dates earlier, over the
  symbols with a finite prediction on both.
- ``ic_decay``: one prediction's daily RankIC against labels of several horizons
  g (mean, Newey-West t and se with g-1 lags, days).
- ``partial_years``: years the dates do not cover from their first to their last
  trading day.
- ``tie_share`` (from ``ties.py``): share of a date's predictions tied with another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import MIN_NAMES, daily_ic, ic_summary, newey_west_se, quantile_returns
from .panel import date_level, symbol_level
from .portfolio import long_short_books, staggered_wealth
from .ties import tie_share  # noqa: F401  (part of this module's interface)


def monthly_ic(daily_ic: pd.Series, how: str = "mean") -> pd.DataFrame:
    """Daily IC aggregated per calendar month: rows = year, columns = month 1..12.

    ``how="mean"`` gives the mean daily IC of the month's days with an IC,
    ``how="count"`` their number (0 where none). NaN ICs are left out.
    """
    if how not in ("mean", "count"):
        raise ValueError(f"how must be 'mean' or 'count', got {how!r}")
    x = pd.Series(daily_ic, dtype=float).dropna()
    d = pd.DatetimeIndex(x.index)
    table = x.groupby([d.year, d.month]).agg(how).unstack()
    table = table.reindex(columns=range(1, 13), fill_value=0 if how == "count" else np.nan)
    if how == "count":
        table = table.fillna(0).astype(int)
    table.index.name, table.columns.name = "year", "month"
    return table


def quantile_cumulative_returns(pred, fwd_ret, horizon: int, n_quantiles: int = 10) -> pd.DataFrame:
    """Cumulative return per prediction quantile (columns 1..n, n = best) on a common calendar.

    Construction: the calendar is every date with at least ``n_quantiles``
    names with a finite pred and ``fwd_ret`` (``metrics.quantile_returns``). On
    each calendar date, quantile q's period return is the equal-weight mean
    ``fwd_ret`` (the ``horizon``-bar forward return) of its names. Book o holds
    each quantile from calendar positions o, o+h, o+2h, ... to the next one, so
    its periods do not overlap; the value shown on date t is the mean over the
    h books of their compounded wealth, minus 1 (``portfolio.staggered_wealth``:
    1/h of the capital in each staggered book, never moved between books). A
    period's return is shown at the date it starts (realized ``horizon`` bars
    later), as in ``long_short_books``. Index = the calendar dates.
    """
    q = quantile_returns(pred, fwd_ret, n_quantiles)
    return staggered_wealth(q, horizon) - 1.0


def spread_from_books(books: list[pd.DataFrame], horizon: int) -> pd.DataFrame:
    """``spread_series`` from already built ``portfolio.long_short_books`` output."""
    cols = ["spread", "net", "cumulative", "cumulative_net"]
    if not books:
        return pd.DataFrame(columns=cols, index=pd.DatetimeIndex([], name="date"), dtype=float)
    t = pd.concat(books).sort_index()
    out = pd.DataFrame({"spread": t["gross"], "net": t["net"]})
    out["cumulative"] = staggered_wealth(out["spread"], horizon) - 1.0
    out["cumulative_net"] = staggered_wealth(out["net"], horizon) - 1.0
    return out[cols]


def spread_series(pred, fwd_ret, horizon: int, quantile: float = 0.1, cost_bps: float = 0.0) -> pd.DataFrame:
    """Top-minus-bottom spread per rebalance date and its cumulative product.

    Rows = every date of the long-short calendar (each is the rebalance date of
    one of the ``horizon`` staggered books of ``portfolio.long_short_books``);
    ``spread`` = mean ``fwd_ret`` of the top ``quantile`` minus that of the
    bottom (gross, per ``horizon``-bar period starting that date), ``net`` = the
    same after ``cost_bps`` per unit traded; ``cumulative`` / ``cumulative_net``
    = staggered wealth of the books minus 1 (see ``quantile_cumulative_returns``).
    """
    return spread_from_books(long_short_books(pred, fwd_ret, horizon, cost_bps, quantile), horizon)


def rank_autocorrelation(pred, lag: int = 1, min_obs: int = MIN_NAMES) -> tuple[pd.Series, float]:
    """Per date t: Spearman correlation of the predictions at t with those ``lag`` dates earlier.

    "Dates" are the dates with at least one finite prediction, in order; the
    correlation is over the symbols with a finite prediction on both dates
    (ranks taken within that common set, average ranks for ties). Dates with
    fewer than ``min_obs`` common symbols or a constant side are left out.
    Returns the Series (indexed by t, named ``rank_autocorr``) and its mean.
    High values (near 1) mean a slow signal and low turnover.
    """
    if lag < 1:
        raise ValueError(f"lag must be >= 1, got {lag!r}")
    if isinstance(pred, pd.DataFrame):
        pred = pred.iloc[:, 0]
    p = pred.astype(float)
    p = p[np.isfinite(p.to_numpy())]
    lvl = date_level(p.index)
    codes, dates = pd.factorize(p.index.get_level_values(lvl), sort=True)
    keep = codes + lag < len(dates)
    shifted_index = pd.MultiIndex.from_arrays(
        [dates[codes[keep] + lag], p.index.get_level_values(symbol_level(p.index))[keep]],
        names=p.index.names)
    earlier = pd.Series(p.to_numpy()[keep], index=shifted_index)  # value of t-lag, filed under t
    out = daily_ic(p, earlier, "spearman", min_obs)
    out.name = "rank_autocorr"
    return out, float(out.mean()) if len(out) else float("nan")


def ic_decay(pred, labels: dict) -> dict:
    """Daily RankIC of one prediction against each label horizon g (e.g. 1, 5, 10, 20).

    ``labels`` maps g -> Series[(date, symbol)] (the lead passes the lagged
    excess returns of horizon g). For each g: ``rank_ic_mean`` (mean daily
    RankIC), ``rank_ic_nw_se`` / ``rank_ic_nw_tstat`` (Newey-West with g-1 lags,
    as overlapping g-bar labels need), ``nw_lags`` and ``n_days``. Keys sorted.
    """
    out = {}
    for g in sorted(labels, key=int):
        ic = daily_ic(pred, labels[g], "spearman")
        s = ic_summary(ic, horizon=int(g))
        out[int(g)] = {"rank_ic_mean": s["mean"], "rank_ic_nw_tstat": s["nw_tstat"],
                       "rank_ic_nw_se": newey_west_se(ic.to_numpy(), s["nw_lags"]),
                       "nw_lags": s["nw_lags"], "n_days": s["n_days"]}
    return out


def partial_years(dates, tolerance_days: int = 10) -> set[int]:
    """Calendar years that ``dates`` do not cover from their first to their last trading day.

    A year Y with dates is partial when its first date is after Jan 1 of Y +
    ``tolerance_days`` calendar days, or its last date before Dec 31 of Y -
    ``tolerance_days``. Why calendar days: the rule needs no exchange calendar.
    Why 10: around New Year an exchange is closed for a weekend plus a few
    holidays - NYSE's first session falls on Jan 2-4 and its last on Dec 29-31;
    Tokyo (closed Dec 31 - Jan 3) opens by Jan 6 and closes by Dec 28; exchanges
    with a New-Year holiday week (Moscow) reopen around Jan 9-11 - so a year that
    is complete on any calendar starts by Jan 11 and ends on or after Dec 21,
    while a walk-forward that starts or ends inside a year misses weeks or months.
    Missing fewer than ``tolerance_days`` days at an edge, or a gap inside the
    year, does not make the year partial.
    """
    d = pd.DatetimeIndex(pd.to_datetime(pd.Index(dates).dropna().unique()))
    if len(d) == 0:
        return set()
    s = pd.Series(d, index=d.year)
    first, last = s.groupby(level=0).min(), s.groupby(level=0).max()
    years = first.index.to_numpy()
    tol = pd.Timedelta(days=tolerance_days)
    jan1 = pd.to_datetime([f"{y}-01-01" for y in years])
    dec31 = pd.to_datetime([f"{y}-12-31" for y in years])
    late_start = first.dt.tz_localize(None).to_numpy() > (jan1 + tol).to_numpy()
    early_end = last.dt.tz_localize(None).to_numpy() < (dec31 - tol).to_numpy()
    return {int(y) for y, bad in zip(years, late_start | early_end) if bad}
