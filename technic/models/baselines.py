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

import pandas as pd

from technic.evaluation.portfolio import equal_weight_metrics  # noqa: F401  (re-exported)

BASELINES = ("momentum_12_1", "reversal_5", "equal_weight")


def baseline_predictions(features: pd.DataFrame) -> dict[str, pd.Series]:
    """Predictions of the ranking baselines from the (date, symbol) feature frame."""
    return {
        "momentum_12_1": features["mom_12_1"].rename("momentum_12_1"),
        "reversal_5": (-features["mom_5"]).rename("reversal_5"),
    }
