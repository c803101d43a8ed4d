"""The demo replays only what its model never saw: the window starts after training + the label purge."""

import numpy as np
import pytest

from stream.tools.demo_window import replay_window, training_dates
from technic.errors import TechnicError

DATES = np.arange(np.datetime64("2014-01-01"), np.datetime64("2014-01-01") + 1200).astype("datetime64[ns]")


def test_window_starts_after_training_end_plus_purge_with_warm_up_before():
    end = DATES[503]
    w = replay_window(DATES, end, days=250, purge=11, warmup=253)
    assert w.dates[0] == DATES[503 + 1 + 11] and len(w.dates) == 250
    assert w.dates[0] > end and (w.dates[0] - end).astype("timedelta64[D]").astype(int) == 12
    assert len(w.warmup) == 253 and w.warmup[-1] == DATES[514]     # the bars right before the window
    assert "out of sample" in w.describe() and "11 trading days" in w.describe()


def test_days_none_means_everything_after_the_purge_and_nothing_left_is_an_error():
    w = replay_window(DATES, DATES[503], days=None, purge=11, warmup=10)
    assert w.dates[-1] == DATES[-1]
    with pytest.raises(TechnicError, match="nothing out of sample"):
        replay_window(DATES, DATES[-5], days=10, purge=11, warmup=10)


def test_training_period_is_two_years_or_half_a_short_history():
    assert training_dates(DATES) == (DATES[0], DATES[503])
    assert training_dates(DATES[:400]) == (DATES[0], DATES[199])
