"""Top-minus-bottom quantile portfolio, costs, turnover, Sharpe and drawdown.

Construction (chosen so that only the h-bar forward return label is needed and
every number is exact, with no overlapping-return smoothing):

- On a rebalance date, go long the top ``quantile`` of names by prediction and
  short the bottom ``quantile``, equal weight, $1 long and $1 short per $1 NAV
  (``k = max(1, floor(n * quantile))`` names per leg). Names are ordered by
  (prediction, ``ties.tie_key``): tied predictions are broken by a hash of
  (date, symbol), deterministic, independent of row order, not alphabetical
  and redrawn each date (see ``ties.py``). The order is total, so the two legs
  never share a name.
- Hold for ``horizon`` bars; the period return is mean(fwd_ret top) -
  mean(fwd_ret bottom). Rebalance every ``horizon`` dates, so periods do not
  overlap (``periods_per_year = 252 / horizon``).
- That book depends on its start phase. We build all ``horizon`` staggered
  books (offset 0..h-1, together they are the 1/h "sleeves" portfolio) and
  :func:`long_short_summary` averages each statistic over them.
- Costs: ``cost_bps`` per unit of notional traded (one-way: each buy or sell is
  charged once). ``traded = sum_i |w_new - w_old|`` with the previous book's
  target weights (no drift); the first rebalance builds the book (traded = 2).
  ``turnover = traded / 4`` is the fraction of the book replaced (0..1: 1 =
  both legs fully replaced, which trades 4x NAV).
- Names without a finite forward return on a date are left out of that date's
  cross-section (a research simplification: delisting losses are not charged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .panel import align, date_level, symbol_level  # noqa: F401  (re-exported)
from .ties import ordered_rank

MIN_NAMES = 5


def top_bottom_masks(p: pd.Series, quantile: float = 0.1) -> tuple[pd.Series, pd.Series]:
    """Boolean (top, bottom) masks: the k = max(1, floor(n*quantile)) highest/lowest per date.

    n = the date's number of finite predictions; dates with n < 2k get no book.
    Ties are broken by ``ties.tie_key`` (a hash of (date, symbol)), not by row
    order: the top leg is the last k in ascending (p, tie_key) order, the bottom
    leg the first k.
    """
    if not 0 < quantile <= 0.5:
        raise ValueError(f"quantile must be in (0, 0.5], got {quantile!r}")
    rank, n = ordered_rank(p)
    k = np.maximum(1, np.floor(n * quantile + 1e-9))
    ok = n >= 2 * k
    top = (rank > n - k) & ok
    bottom = (rank <= k) & ok
    return top, bottom


def long_short_books(pred, fwd_ret, horizon: int, cost_bps: float = 10.0,
                     quantile: float = 0.1, min_names: int = MIN_NAMES) -> list[pd.DataFrame]:
    """The ``horizon`` staggered non-overlapping long-short books (see module doc).

    Book ``o`` rebalances on date positions o, o+h, ...; each is a DataFrame
    indexed by rebalance date with columns gross, traded, turnover, cost, net,
    n_long, n_short (returns are per holding period of ``horizon`` bars).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon!r}")
    df = align(pred, fwd_ret)
    lvl = date_level(df.index)
    df = df[df.groupby(level=lvl)["p"].transform("size") >= min_names]
    top, bot = top_bottom_masks(df["p"], quantile)
    key = df.index.get_level_values(lvl)
    n_long = top.groupby(key).sum()
    n_short = bot.groupby(key).sum()
    w = top / n_long.reindex(key).values - bot / n_short.reindex(key).values
    gross = df["y"][top.values].groupby(key[top.values]).mean() \
        - df["y"][bot.values].groupby(key[bot.values]).mean()
    dates = gross.dropna().index
    pos = pd.Series(np.arange(len(dates)), index=dates)
    # traded notional vs the same book's previous rebalance (h dates earlier), sparse
    held = w[w != 0]
    sym = held.index.get_level_values(symbol_level(held.index))
    p_now = pos.reindex(held.index.get_level_values(lvl)).values
    keep = ~np.isnan(p_now)
    cur = pd.Series(held.values[keep], index=pd.MultiIndex.from_arrays([p_now[keep].astype(int), sym[keep]]))
    prev = pd.Series(cur.values, index=pd.MultiIndex.from_arrays(
        [cur.index.get_level_values(0) + horizon, cur.index.get_level_values(1)]))
    diff = cur.sub(prev, fill_value=0.0).abs()
    traded = diff.groupby(level=0).sum().reindex(np.arange(len(dates)), fill_value=0.0)
    table = pd.DataFrame({
        "gross": gross.reindex(dates).values, "traded": traded.values,
        "n_long": n_long.reindex(dates).values, "n_short": n_short.reindex(dates).values,
    }, index=pd.DatetimeIndex(dates, name="date"))
    table["turnover"] = table["traded"] / 4.0
    table["cost"] = table["traded"] * cost_bps * 1e-4
    table["net"] = table["gross"] - table["cost"]
    cols = ["gross", "traded", "turnover", "cost", "net", "n_long", "n_short"]
    return [table.iloc[o::horizon][cols] for o in range(min(horizon, len(table)))]


def long_short_returns(pred, fwd_ret, horizon: int, cost_bps: float = 10.0,
                       quantile: float = 0.1, offset: int = 0) -> pd.DataFrame:
    """One non-overlapping book (start phase ``offset``): gross, net, turnover, ... per rebalance."""
    books = long_short_books(pred, fwd_ret, horizon, cost_bps, quantile)
    if not books:
        return pd.DataFrame(columns=["gross", "traded", "turnover", "cost", "net", "n_long", "n_short"])
    return books[offset]


def staggered_wealth(returns, horizon: int):
    """Wealth of the 1/h "sleeves" portfolio built from per-rebalance-date period returns.

    ``returns`` (Series or DataFrame, one row per date of a calendar, in order)
    holds on each date the ``horizon``-bar return of the book that rebalances
    there; book ``o`` rebalances on positions o, o+h, o+2h, ... (as in
    :func:`long_short_books`). Book o's wealth at position t is the product of
    (1 + r) over its rebalance positions <= t (1 before its first one, held flat
    between rebalances); the result is the mean over the min(h, T) books of
    their wealth: the value of a portfolio that puts 1/h of its capital in each
    book at the start and never moves money between books. As in the books'
    own tables, a period's return is shown at the date it starts. NaN returns
    count as 0 (flat).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon!r}")
    r = np.nan_to_num(np.asarray(returns, dtype=float))
    r2 = r[:, None] if r.ndim == 1 else r
    n, books = len(r2), min(horizon, len(r2))
    total = np.zeros_like(r2)
    for o in range(books):  # one vectorized pass per start phase (h <= ~20), not per date
        w = np.cumprod(1.0 + r2[o::horizon], axis=0)
        full = np.ones_like(r2)
        full[o:] = np.repeat(w, horizon, axis=0)[:n - o]
        total += full
    out = (total / max(books, 1)).reshape(r.shape)
    if isinstance(returns, pd.DataFrame):
        return pd.DataFrame(out, index=returns.index, columns=returns.columns)
    return pd.Series(out, index=getattr(returns, "index", None))


def sharpe(returns, periods_per_year: float = 252) -> float:
    """Annualized Sharpe ratio (mean / std * sqrt(periods_per_year)), zero risk-free rate."""
    r = pd.Series(returns, dtype=float).dropna()
    if len(r) < 2 or r.std(ddof=1) == 0:
        return float("nan")
    return float(r.mean() / r.std(ddof=1) * np.sqrt(periods_per_year))


def annualized_return(returns, periods_per_year: float = 252) -> float:
    """Geometric annualized return of a series of simple period returns."""
    r = pd.Series(returns, dtype=float).dropna()
    if len(r) == 0:
        return float("nan")
    growth = float(np.prod(1.0 + r.values))
    if growth <= 0:
        return -1.0
    return growth ** (periods_per_year / len(r)) - 1.0


def max_drawdown(returns) -> float:
    """Largest peak-to-trough loss of the compounded equity curve (<= 0, e.g. -0.25)."""
    r = pd.Series(returns, dtype=float).dropna()
    if len(r) == 0:
        return float("nan")
    equity = np.concatenate([[1.0], np.cumprod(1.0 + r.values)])
    return float(np.min(equity / np.maximum.accumulate(equity) - 1.0))


def long_short_summary(books: list[pd.DataFrame], horizon: int) -> dict:
    """Average over the staggered books of annualized return, Sharpe, drawdown; mean turnover."""
    ppy = 252.0 / horizon
    nan = float("nan")
    if not books or all(len(b) == 0 for b in books):
        return {k: nan for k in ("ann_return_net", "ann_return_gross", "sharpe_net", "sharpe_gross",
                                 "max_drawdown_net", "turnover")} | {"n_periods": 0}
    stats = pd.DataFrame([{
        "ann_return_net": annualized_return(b["net"], ppy),
        "ann_return_gross": annualized_return(b["gross"], ppy),
        "sharpe_net": sharpe(b["net"], ppy), "sharpe_gross": sharpe(b["gross"], ppy),
        "max_drawdown_net": max_drawdown(b["net"]),
    } for b in books])
    out = {k: float(v) for k, v in stats.mean().items()}
    out["turnover"] = float(pd.concat([b["turnover"] for b in books]).mean())
    out["n_periods"] = int(sum(len(b) for b in books))
    return out


def equal_weight_metrics(fwd_ret: pd.Series, horizon: int) -> dict:
    """Long-only equal-weight universe metrics; signal metrics are NaN by definition."""
    r = fwd_ret.dropna()
    per_date = r.groupby(level=0).mean().sort_index()
    ppy = 252.0 / horizon
    books = [per_date.iloc[o::horizon] for o in range(min(horizon, len(per_date)))]
    ann = [annualized_return(b.values, ppy) for b in books if len(b) > 1]
    shp = [sharpe(b.values, ppy) for b in books if len(b) > 1]
    mdd = [max_drawdown(b.values) for b in books if len(b) > 1]
    nan = float("nan")

    def mean(xs):
        xs = [x for x in xs if np.isfinite(x)]
        return float(np.mean(xs)) if xs else nan
    return {
        "rank_ic_mean": nan, "rank_ic_std": nan, "rank_icir": nan, "rank_ic_tstat": nan,
        "rank_ic_nw_tstat": nan, "ic_mean": nan, "hit_rate": nan, "top_decile_hit_rate": nan,
        "long_short_ann_return": nan, "sharpe_net": nan, "max_drawdown": nan, "turnover": 0.0,
        "long_only_ann_return": mean(ann), "long_only_sharpe": mean(shp),
        "long_only_max_drawdown": mean(mdd), "n_days": int(len(per_date)),
        "note": "constant prediction: signal metrics undefined; long_only_* = equal-weight universe",
    }
