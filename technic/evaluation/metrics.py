"""Cross-sectional signal metrics: IC, RankIC, Newey-West t-stat, hit rates, quantiles.

All functions are pure and NaN-aware. ``pred`` and labels are pandas objects
indexed by a (date, symbol) MultiIndex; a (date, symbol) pair is used only when
both pred and label are finite. Every statistic is computed per date (one
cross-section) first, then aggregated over dates, so a date with many symbols
does not outweigh a thin one.

Definitions ("win rate" is ambiguous, so we report two explicit ones):

- ``hit_rate``: over all (date, symbol) pairs, the fraction where
  sign(pred - median pred of that date) == sign(label - median label of that
  date). Pairs exactly at either median (sign 0) are left out. 0.5 = no skill.
- ``top_decile_hit_rate``: each day, the fraction of the names in the predicted
  top decile whose label is above that day's median label, averaged over days.

Quantile membership (``quantile_returns``, the top decile of
``top_decile_hit_rate``) orders each date's names by (prediction,
``ties.tie_key``): tied predictions are broken by a hash of (date, symbol) that
is deterministic, independent of row order, not alphabetical and redrawn each
date (``ties.py``); ``tie_share`` measures how many predictions are tied.

Portfolio metrics (long-short, Sharpe, drawdown) live in ``portfolio.py`` and
are re-exported here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .portfolio import MIN_NAMES, align, top_bottom_masks  # noqa: F401
from .ties import average_rank, ordered_rank, tie_share  # noqa: F401
from .portfolio import date_level as _date_level
from .portfolio import (annualized_return, long_short_books, long_short_returns,  # noqa: F401
                        long_short_summary, max_drawdown, sharpe)


def _groups(df: pd.DataFrame):
    return df.groupby(level=_date_level(df.index), sort=True)


def _ranks(df: pd.DataFrame) -> pd.DataFrame:
    """Per-date average ranks of every column (ties share their average rank, as Spearman needs)."""
    return pd.DataFrame({c: average_rank(df[c]) for c in df.columns}, index=df.index)


def _per_date_corr(df: pd.DataFrame, min_obs: int = MIN_NAMES) -> pd.Series:
    g = _groups(df)
    x = df["p"] - g["p"].transform("mean")
    y = df["y"] - g["y"].transform("mean")
    key = df.index.get_level_values(_date_level(df.index))
    sums = pd.DataFrame({"xy": x * y, "xx": x * x, "yy": y * y}).groupby(key).sum()
    lo, hi = g.min(), g.max()  # a side is constant when its min equals its max (values are finite)
    ok = (g.size() >= min_obs) & (hi["p"] > lo["p"]) & (hi["y"] > lo["y"])
    ic = sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])
    ic = ic[ok.reindex(ic.index, fill_value=False)]
    ic.index.name = "date"
    return ic.clip(-1.0, 1.0)


def daily_ic(pred, label, method: str = "pearson", min_obs: int = MIN_NAMES) -> pd.Series:
    """Per-date correlation between pred and label across symbols.

    ``method="spearman"`` gives RankIC (Pearson on per-date average ranks).
    Dates with fewer than ``min_obs`` valid pairs or a constant side are skipped.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    df = align(pred, label)
    if method == "spearman":
        df = _ranks(df)
    out = _per_date_corr(df, min_obs)
    out.name = "rank_ic" if method == "spearman" else "ic"
    return out


def newey_west_se(x, lags: int) -> float:
    """Newey-West (Bartlett kernel) standard error of the mean of ``x``.

    Var(mean) = (gamma_0 + 2 * sum_{l=1..L} (1 - l/(L+1)) * gamma_l) / n with
    gamma_l = (1/n) * sum_t (x_t - m)(x_{t-l} - m). ``lags=0`` is the plain
    (biased, 1/n) standard error.
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return float("nan")
    if lags < 0:
        raise ValueError(f"lags must be >= 0, got {lags!r}")
    e = x - x.mean()
    s = e @ e / n
    for lag in range(1, min(lags, n - 1) + 1):
        s += 2.0 * (1.0 - lag / (lags + 1.0)) * (e[lag:] @ e[:-lag]) / n
    return float(np.sqrt(max(s, 0.0) / n))


def ic_summary(ic_series, nw_lags: int | None = None, horizon: int = 1) -> dict:
    """Mean, std, ICIR, t-stat and Newey-West t-stat of a daily IC series.

    ``nw_lags`` defaults to ``horizon - 1``: daily ICs of overlapping h-bar
    labels are autocorrelated up to lag h-1, so the plain t-stat overstates.
    ``icir`` is per-day (mean / std), not annualized.
    """
    x = pd.Series(ic_series, dtype=float).dropna()
    n = len(x)
    lags = max(int(horizon) - 1, 0) if nw_lags is None else int(nw_lags)
    mean = float(x.mean()) if n else float("nan")
    std = float(x.std(ddof=1)) if n > 1 else float("nan")
    icir = mean / std if n > 1 and std > 0 else float("nan")
    se = newey_west_se(x.values, lags)
    return {
        "mean": mean, "std": std, "icir": icir,
        "tstat": float(icir * np.sqrt(n)) if n > 1 else float("nan"),
        "nw_tstat": mean / se if se and np.isfinite(se) and se > 0 else float("nan"),
        "nw_lags": lags, "n_days": n,
    }


def _hit_counts(df: pd.DataFrame, min_obs: int = MIN_NAMES) -> pd.DataFrame:
    """Per date: number of sign-vs-median hits and of counted pairs."""
    g = _groups(df)
    sp = np.sign(df["p"] - g["p"].transform("median"))
    sy = np.sign(df["y"] - g["y"].transform("median"))
    valid = (sp != 0) & (sy != 0)
    key = df.index.get_level_values(_date_level(df.index))
    out = pd.DataFrame({"hits": (valid & (sp == sy)).astype(float), "n": valid.astype(float)})
    out = out.groupby(key).sum()
    return out[g.size().reindex(out.index) >= min_obs]


def hit_rate(pred, label) -> float:
    """Pooled fraction of pairs with sign(pred - median) == sign(label - median), per date."""
    c = _hit_counts(align(pred, label))
    return float(c["hits"].sum() / c["n"].sum()) if c["n"].sum() > 0 else float("nan")


def _top_hits(df: pd.DataFrame, quantile: float = 0.1, min_obs: int = MIN_NAMES) -> pd.Series:
    """Per date: fraction of the predicted top quantile with label above the date median."""
    top, _ = top_bottom_masks(df["p"], quantile)
    above = df["y"] > _groups(df)["y"].transform("median")
    key = df.index.get_level_values(_date_level(df.index))
    frac = above[top.values].groupby(key[top.values]).mean()
    ok = _groups(df).size() >= min_obs
    return frac[ok.reindex(frac.index, fill_value=False)]


def top_decile_hit_rate(pred, label, quantile: float = 0.1) -> float:
    """Mean over dates of the share of top-decile names whose label beats the date median."""
    s = _top_hits(align(pred, label), quantile)
    return float(s.mean()) if len(s) else float("nan")


def quantile_returns(pred, fwd_ret, n_quantiles: int = 10) -> pd.DataFrame:
    """Mean forward return per prediction quantile: rows = dates, columns = 1..n (n = best).

    A name of rank r (1..n in ascending (pred, ``ties.tie_key``) order: tied
    predictions are broken by a hash of (date, symbol), not by the symbol's name,
    see ``ties.py``) is in quantile ceil(r * n_quantiles / n), so the buckets
    differ in size by at most one. Dates with fewer than ``n_quantiles`` names
    are skipped. ``.mean()`` of the result gives the average decile profile.
    """
    df = align(pred, fwd_ret)
    df = df[_groups(df)["p"].transform("size") >= n_quantiles]
    r, n = ordered_rank(df["p"])
    bucket = np.ceil(r * n_quantiles / n).astype(int)
    key = df.index.get_level_values(_date_level(df.index))
    out = df["y"].groupby([key, bucket.values]).mean().unstack()
    out.index.name, out.columns.name = "date", "quantile"
    return out.reindex(columns=range(1, n_quantiles + 1))


def summarize(pred, labels_df: pd.DataFrame, horizon: int, cost_bps: float = 10.0,
              quantile: float = 0.1) -> dict:
    """Headline metrics of one prediction series for one label horizon.

    IC and hit rates use ``excess_{h}``; the long-short portfolio uses
    ``fwd_ret_{h}`` (see ``portfolio.long_short_summary`` for construction).
    Newey-West lags = horizon - 1.
    """
    exc, fwd = labels_df[f"excess_{horizon}"], labels_df[f"fwd_ret_{horizon}"]
    df = align(pred, exc)
    rank_ic = _per_date_corr(_ranks(df))
    rs = ic_summary(rank_ic, horizon=horizon)
    ic = ic_summary(_per_date_corr(df), horizon=horizon)
    hits = _hit_counts(df)
    ls = long_short_summary(long_short_books(pred, fwd, horizon, cost_bps, quantile), horizon)
    return {
        "rank_ic_mean": rs["mean"], "rank_ic_std": rs["std"], "rank_icir": rs["icir"],
        "rank_ic_tstat": rs["tstat"], "rank_ic_nw_tstat": rs["nw_tstat"],
        "ic_mean": ic["mean"], "ic_nw_tstat": ic["nw_tstat"],
        "hit_rate": float(hits["hits"].sum() / hits["n"].sum()) if hits["n"].sum() else float("nan"),
        "top_decile_hit_rate": float(_top_hits(df, quantile).mean()),
        "long_short_ann_return": ls["ann_return_net"], "long_short_ann_return_gross": ls["ann_return_gross"],
        "sharpe_net": ls["sharpe_net"], "sharpe_gross": ls["sharpe_gross"],
        "max_drawdown": ls["max_drawdown_net"], "turnover": ls["turnover"],
        "n_days": rs["n_days"],
    }


def _light_summary(df: pd.DataFrame, horizon: int, quantile: float) -> dict:
    rs = ic_summary(_per_date_corr(_ranks(df)), horizon=horizon)
    hits = _hit_counts(df)
    return {
        "rank_ic_mean": rs["mean"], "rank_icir": rs["icir"], "rank_ic_nw_tstat": rs["nw_tstat"],
        "hit_rate": float(hits["hits"].sum() / hits["n"].sum()) if hits["n"].sum() else float("nan"),
        "top_decile_hit_rate": float(_top_hits(df, quantile).mean()) if len(df) else float("nan"),
        "n_days": rs["n_days"],
    }


def breakdown(pred, labels_df: pd.DataFrame, horizon: int, by: str = "year",
              sectors: dict | None = None, quantile: float = 0.1) -> dict:
    """Per-group metrics: by calendar year of the date, or by sector (symbol -> sector).

    By sector, the cross-section is restricted to the sector's names (IC within
    sector). Each value has rank_ic_mean, rank_icir, rank_ic_nw_tstat,
    hit_rate, top_decile_hit_rate and n_days. Keys are strings (JSON-ready).
    """
    df = align(pred, labels_df[f"excess_{horizon}"])
    if by == "year":
        key = pd.DatetimeIndex(df.index.get_level_values(_date_level(df.index))).year
    elif by == "sector":
        if not sectors:
            raise ValueError("by='sector' needs sectors= (a dict symbol -> sector)")
        sym = df.index.get_level_values("symbol" if "symbol" in df.index.names else 1)
        key = pd.Index(sym).map(lambda s: sectors.get(s, "Unknown"))
    else:
        raise ValueError(f"by must be 'year' or 'sector', got {by!r}")
    return {str(k): _light_summary(sub, horizon, quantile)
            for k, sub in df.groupby(np.asarray(key), sort=True)}
