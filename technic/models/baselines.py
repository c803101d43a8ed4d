"""Baselines, evaluated on the same walk-forward test dates as every model.

* ``momentum_12_1``: prediction = the 12-1 momentum feature (return from 252 to 21 bars ago).
* ``reversal_5``: prediction = minus the 5-bar return (last week's losers bounce).
* ``equal_weight``: hold the whole universe equally. Its "prediction" is a constant, so
  RankIC, IC and hit rates are undefined (reported as NaN/null): a constant ranks nothing.
  What it does have is a return: :func:`equal_weight_metrics` reports the long-only
  universe return (``long_only_ann_return``, ``long_only_sharpe``, ``long_only_max_drawdown``,
  averaged over the ``horizon`` staggered non-overlapping books) - the market the
  long-short books are neutral to.

Nothing is fitted, so there is nothing to leak.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from technic.evaluation.portfolio import annualized_return, max_drawdown, sharpe

BASELINES = ("momentum_12_1", "reversal_5", "equal_weight")


def baseline_predictions(features: pd.DataFrame) -> dict[str, pd.Series]:
    """Predictions of the ranking baselines from the (date, symbol) feature frame."""
    return {
        "momentum_12_1": features["mom_12_1"].rename("momentum_12_1"),
        "reversal_5": (-features["mom_5"]).rename("reversal_5"),
    }


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
