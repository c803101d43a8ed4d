"""The series the tear sheet draws and summarizes for one prediction, each computed once.

A report asks for the same series several times (a baseline's daily RankIC in
every model's IC chart, the deciles for the bar chart and the quantile curves,
the long-short books for the equity chart and the spread chart). ``SignalStats``
holds one prediction series against one horizon's labels and computes each
series lazily, on first use, with the functions of ``metrics``,
``diagnostics`` and ``portfolio`` (it adds no definition of its own).
"""

from __future__ import annotations

from functools import cached_property

import pandas as pd

from . import diagnostics as D
from . import metrics as M
from .panel import date_level
from .portfolio import staggered_wealth


class SignalStats:
    """Lazily computed statistics of ``pred`` vs the labels of ``horizon``.

    ``labels`` has ``excess_{h}`` (IC, RankIC) and ``fwd_ret_{h}`` (quantiles,
    long-short); ``decay_labels`` (optional) maps g -> label Series for the IC decay.
    """

    def __init__(self, pred, labels: pd.DataFrame, horizon: int, cost_bps: float = 10.0,
                 decay_labels: dict | None = None, quantile: float = 0.1, n_quantiles: int = 10):
        self.pred, self.labels, self.horizon = pred, labels, int(horizon)
        self.cost_bps, self.decay_labels = float(cost_bps), decay_labels
        self.quantile, self.n_quantiles = quantile, n_quantiles

    @property
    def excess(self) -> pd.Series:
        return self.labels[f"excess_{self.horizon}"]

    @property
    def fwd_ret(self) -> pd.Series:
        return self.labels[f"fwd_ret_{self.horizon}"]

    @cached_property
    def daily_rank_ic(self) -> pd.Series:
        """Daily RankIC vs ``excess_h`` (``metrics.daily_ic``)."""
        return M.daily_ic(self.pred, self.excess, "spearman")

    @cached_property
    def monthly_ic(self) -> pd.DataFrame:
        return D.monthly_ic(self.daily_rank_ic)

    @cached_property
    def quantile_returns(self) -> pd.DataFrame:
        """Per date and quantile, mean ``fwd_ret_h`` (``metrics.quantile_returns``)."""
        return M.quantile_returns(self.pred, self.fwd_ret, self.n_quantiles)

    @cached_property
    def decile_profile(self) -> pd.Series:
        return self.quantile_returns.mean()

    @cached_property
    def quantile_cumulative(self) -> pd.DataFrame:
        """``diagnostics.quantile_cumulative_returns`` from the quantile returns already computed."""
        return staggered_wealth(self.quantile_returns, self.horizon) - 1.0

    @cached_property
    def books(self) -> list[pd.DataFrame]:
        return M.long_short_books(self.pred, self.fwd_ret, self.horizon, self.cost_bps, self.quantile)

    @cached_property
    def spread(self) -> pd.DataFrame:
        return D.spread_from_books(self.books, self.horizon)

    @cached_property
    def rank_autocorr(self) -> tuple[pd.Series, float]:
        return D.rank_autocorrelation(self.pred)

    @cached_property
    def tie_share(self) -> tuple[pd.Series, float]:
        return D.tie_share(self.pred)

    @cached_property
    def ic_decay(self) -> dict | None:
        return D.ic_decay(self.pred, self.decay_labels) if self.decay_labels else None

    @cached_property
    def partial_years(self) -> set[int]:
        """Partial years of the dates with a finite pred and ``excess_h`` (the rows the year breakdown groups)."""
        df = M.align(self.pred, self.excess)
        return D.partial_years(df.index.get_level_values(date_level(df.index)).unique())
