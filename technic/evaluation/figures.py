"""Matplotlib figures of the tear sheet, each returned as an ``<img>`` with a base64 PNG.

Every function takes series that are already computed (``SignalStats``) and
draws only; none computes a statistic of its own beyond a rolling mean for
display. Long series are drawn as line collections (``vlines``, dates converted once),
not as one bar patch per date, which keeps a figure at a fraction of a second
on 1,000+ dates.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .metrics import newey_west_se  # noqa: E402

POS, NEG = "#5a5", "#c55"


def png(fig) -> str:
    """The figure as a self-contained ``<img>`` tag (base64 PNG, 80 dpi); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _date_vlines(ax, index, values, **kw):
    """Vertical lines from 0 at each date: dates converted once (matplotlib converts a
    DatetimeIndex given to ``vlines`` element by element, ~3x slower on 1,000 dates)."""
    ax.vlines(mdates.date2num(pd.DatetimeIndex(index).tz_localize(None).to_numpy()), 0, values, **kw)
    ax.xaxis_date()


def no_data(what: str) -> str:
    return f"<p class='note'>{what}: not enough data</p>"


def _legend(ax):
    ax.legend(loc="upper left", fontsize=8)


def ic_figure(name, ic: pd.Series, baseline_ics: dict, horizon: int) -> str:
    """Daily RankIC with its 63-day mean, and cumulative RankIC beside the baselines'."""
    if ic.dropna().empty:
        return no_data("daily RankIC")
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    _date_vlines(a1, ic.index, ic.values, color="#9ab", lw=1, label="daily RankIC")
    a1.plot(ic.index, ic.rolling(63, min_periods=20).mean(), color="#c33", label="63-day mean")
    a1.axhline(0, color="k", lw=0.5)
    a1.set_title(f"{name}: daily RankIC vs excess_{horizon}")
    _legend(a1)
    a2.plot(ic.index, ic.cumsum(), lw=2, label=name)
    for bname, bic in baseline_ics.items():
        a2.plot(bic.index, bic.cumsum(), ls="--", lw=1, label=bname)
    a2.axhline(0, color="k", lw=0.5)
    a2.set_title("cumulative RankIC (baselines dashed)")
    _legend(a2)
    return png(fig)


def ic_histogram_figure(name, ic: pd.Series, horizon: int) -> str:
    """Histogram of the daily RankIC with its mean and mean +- 2 Newey-West se (horizon-1 lags)."""
    x = ic.dropna()
    if x.empty:
        return no_data("RankIC distribution")
    m, se = float(x.mean()), newey_west_se(x.to_numpy(), max(horizon - 1, 0))
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(x.values, bins=min(60, max(10, len(x) // 20)), color="#9ab")
    ax.axvline(0, color="k", lw=0.5)
    ax.axvline(m, color="#c33", lw=1.5, label=f"mean {m:.4f}")
    for b in (m - 2 * se, m + 2 * se):
        ax.axvline(b, color="#c33", ls="--", lw=1)
    ax.plot([], [], color="#c33", ls="--", lw=1, label=f"mean \u00b1 2 NW se ({se:.4f})")
    ax.set_xlabel(f"daily RankIC vs excess_{horizon}")
    ax.set_title(f"{name}: distribution of daily RankIC ({len(x)} days)")
    _legend(ax)
    return png(fig)


def monthly_ic_figure(name, table: pd.DataFrame) -> str:
    """Heat map of the mean daily RankIC per month (rows = year), each cell annotated."""
    if table.empty:
        return no_data("monthly RankIC")
    v = table.to_numpy(dtype=float)
    lim = np.nanmax(np.abs(v)) if np.isfinite(v).any() else 1.0
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(table) + 1.2))
    ax.imshow(np.ma.masked_invalid(v), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i, j in zip(*np.nonzero(np.isfinite(v))):
        ax.text(j, i, f"{v[i, j]:.3f}", ha="center", va="center", fontsize=7,
                color="white" if abs(v[i, j]) > 0.6 * lim else "black")
    ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    ax.set_yticks(range(len(table)), [str(y) for y in table.index])
    ax.set_title(f"{name}: mean daily RankIC per month (blank = no data)")
    return png(fig)


def decile_figure(name, profile: pd.Series, baseline_profiles: dict, horizon: int) -> str:
    """Mean forward return per predicted decile, the model's bars beside each baseline's."""
    if profile.dropna().empty:
        return no_data("decile returns")
    series = {name: profile, **baseline_profiles}
    x = np.arange(len(profile))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(8 if len(series) > 1 else 6, 3))
    for i, (label, q) in enumerate(series.items()):
        vals = q.reindex(profile.index).to_numpy(dtype=float) * 1e4
        color = [POS if v >= 0 else NEG for v in vals] if len(series) == 1 else f"C{i}"
        ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, color=color,
               alpha=1.0 if i == 0 else 0.6, label=label)
    ax.set_xticks(x, profile.index.astype(str))
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("predicted decile (10 = best)")
    ax.set_ylabel(f"mean fwd_ret_{horizon} (bps)")
    ax.set_title(f"{name}: decile mean forward return" + (" vs baselines" if len(series) > 1 else ""))
    if len(series) > 1:
        _legend(ax)
    return png(fig)


def long_short_figures(name, books: list, horizon: int, cost_bps: float) -> str:
    """Net equity of every staggered book (book 0 bold, + its gross) and turnover per rebalance."""
    if not books:
        return no_data("long-short book")
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for i, b in enumerate(books):
        ax.plot(b.index, np.cumprod(1 + b["net"]), color="#36c" if i == 0 else "#9bd",
                lw=1.8 if i == 0 else 0.8, label="net, book 0" if i == 0 else None)
    ax.plot(books[0].index, np.cumprod(1 + books[0]["gross"]), color="#888", ls="--", lw=1, label="gross, book 0")
    ax.axhline(1, color="k", lw=0.5)
    ax.set_title(f"{name}: top-minus-bottom decile equity, net of {cost_bps:g} bps "
                 f"({len(books)} staggered {horizon}-day books)")
    _legend(ax)
    out = png(fig)
    tv = pd.concat(books).sort_index()["turnover"]
    fig, ax = plt.subplots(figsize=(10, 2.5))
    ax.plot(tv.index, tv.values, lw=0.6, color="#777")
    ax.plot(tv.index, tv.rolling(20, min_periods=5).mean(), color="#c33", lw=1.5, label="20-rebalance mean")
    ax.set_ylim(0, 1.05)
    ax.set_title("turnover per rebalance (fraction of book replaced)")
    _legend(ax)
    return out + png(fig)


def quantile_cumulative_figure(name, cum: pd.DataFrame, horizon: int) -> str:
    """Cumulative return of each quantile portfolio (staggered books), best quantile warmest."""
    if cum.empty:
        return no_data("quantile returns")
    fig, ax = plt.subplots(figsize=(10, 3.5))
    cmap = plt.get_cmap("coolwarm")
    n = max(len(cum.columns) - 1, 1)
    for i, q in enumerate(cum.columns):
        ax.plot(cum.index, cum[q].values, color=cmap(i / n), lw=1.6 if i in (0, n) else 0.9, label=f"Q{q}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title(f"{name}: cumulative return per predicted quantile (equal weight, {horizon}-day holding, "
                 f"mean of {horizon} staggered books)")
    ax.legend(loc="upper left", fontsize=7, ncol=5)
    return png(fig)


def spread_figure(name, spread: pd.DataFrame, horizon: int, cost_bps: float) -> str:
    """Top-minus-bottom spread per rebalance date (all staggered books) and its cumulative product."""
    if spread.empty:
        return no_data("top-minus-bottom spread")
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    s = spread["spread"]
    _date_vlines(a1, s.index, s.values * 1e4, color="#9ab", lw=1, label=f"gross {horizon}-day spread")
    a1.plot(s.index, s.rolling(63, min_periods=20).mean() * 1e4, color="#c33", label="63-date mean")
    a1.axhline(0, color="k", lw=0.5)
    a1.set_ylabel("bps")
    a1.set_title(f"{name}: top-minus-bottom decile spread per rebalance date")
    _legend(a1)
    a2.plot(spread.index, spread["cumulative"], color="#888", label="gross")
    a2.plot(spread.index, spread["cumulative_net"], color="#36c", lw=1.6, label=f"net of {cost_bps:g} bps")
    a2.axhline(0, color="k", lw=0.5)
    a2.set_title(f"cumulative spread (mean of the {horizon} staggered books)")
    _legend(a2)
    return png(fig)


def rank_autocorr_figure(name, series: pd.Series, baselines: dict) -> str:
    """Day-over-day rank autocorrelation of the signal (63-day mean), baselines' means dashed."""
    if series.dropna().empty:
        return no_data("rank autocorrelation")
    fig, ax = plt.subplots(figsize=(10, 2.8))
    ax.plot(series.index, series.values, color="#bbb", lw=0.6)
    ax.plot(series.index, series.rolling(63, min_periods=20).mean(), color="#36c", lw=1.6,
            label=f"{name}, 63-day mean (overall {series.mean():.3f})")
    for i, (bname, b) in enumerate(baselines.items(), start=1):
        ax.axhline(b.mean(), color=f"C{i}", ls="--", lw=1, label=f"{bname} mean {b.mean():.3f}")
    ax.set_ylim(min(-0.05, float(np.nanmin(series.values, initial=0.0))), 1.02)
    ax.set_title(f"{name}: Spearman correlation of prediction ranks with the previous date's")
    _legend(ax)
    return png(fig)


def ic_decay_figure(name, decay: dict, baselines: dict) -> str:
    """Mean daily RankIC per label horizon g, with +- 2 Newey-West se bars, beside the baselines'."""
    series = {name: decay, **baselines}
    gs = sorted(decay)
    x = np.arange(len(gs))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(7, 3))
    for i, (label, d) in enumerate(series.items()):
        m = [d.get(g, {}).get("rank_ic_mean", np.nan) for g in gs]
        e = [2 * d.get(g, {}).get("rank_ic_nw_se", np.nan) for g in gs]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, m, width, yerr=e, capsize=3,
               color=f"C{i}", alpha=1.0 if i == 0 else 0.6, label=label)
    ax.set_xticks(x, [f"{g}-day" for g in gs])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("mean daily RankIC")
    ax.set_title(f"{name}: IC decay over label horizons (bars: \u00b1 2 NW se, g-1 lags)")
    _legend(ax)
    return png(fig)


def importance_figure(name, importance: dict, top: int = 25) -> str:
    """Horizontal bars of the ``top`` largest |importance| values (SHAP / gain)."""
    s = pd.Series(importance, dtype=float).dropna()
    s = s.reindex(s.abs().sort_values(ascending=False).index[:top])[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(s) + 1))
    ax.barh(s.index.astype(str), s.values, color="#58a")
    ax.set_title(f"{name}: feature importance (top {len(s)})")
    return png(fig)
