"""Tear-sheet diagnostics against independent oracles (plain loops, scipy, hand-worked examples)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from technic.evaluation import diagnostics as D
from technic.evaluation.ties import tie_key


def make_panel(n_dates=45, n_sym=27, seed=0, nan_frac=0.08):
    """pred with a signal, fwd_ret, NaNs in both, one thin date (3 names) and one empty date."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-12-02", periods=n_dates)
    idx = pd.MultiIndex.from_product([dates, [f"S{i:03d}" for i in range(n_sym)]], names=["date", "symbol"])
    f = rng.normal(size=len(idx))
    y = pd.Series((0.3 * f + rng.normal(size=len(idx))) * 0.02, idx)
    pred = pd.Series(np.round(f, 1), idx)  # rounding creates ties
    pred[rng.random(len(idx)) < nan_frac] = np.nan
    y[rng.random(len(idx)) < nan_frac] = np.nan
    thin, empty = dates[5], dates[9]
    pred.loc[thin] = np.nan
    pred.loc[(thin, "S000"):(thin, "S002")] = [0.1, 0.2, 0.3]
    pred.loc[empty] = np.nan
    return pred, y


def rows_by_date(pred, y):
    """{date: [(pred, fwd, symbol)]} of the rows where both are finite, in date order."""
    out = {}
    for (d, s), p in pred.items():
        v = y.get((d, s), np.nan)
        if np.isfinite(p) and np.isfinite(v):
            out.setdefault(d, []).append((p, v, s))
    return dict(sorted(out.items()))


def sorted_syms(rows, d):
    """Ascending (pred, hash of (date, symbol)) order, with Python's sorted()."""
    keys = tie_key(pd.MultiIndex.from_tuples([(d, s) for _, _, s in rows]))
    return [r for _, r in sorted(zip(zip([p for p, _, _ in rows], keys.tolist()), rows))]


def staggered_oracle(per_date_returns: dict, h: int) -> dict:
    """Mean over start phases of each phase's wealth, walking the calendar date by date."""
    dates = list(per_date_returns)
    n_books = min(h, len(dates))
    wealth = {o: 1.0 for o in range(n_books)}
    out = {}
    for i, d in enumerate(dates):
        o = i % h
        wealth[o] *= 1.0 + per_date_returns[d]
        out[d] = sum(wealth.values()) / n_books
    return out


@pytest.mark.parametrize("h", [1, 3])
def test_quantile_cumulative_returns_match_loop(h):
    pred, y = make_panel()
    got = D.quantile_cumulative_returns(pred, y, h, n_quantiles=4)
    per_q = {q: {} for q in range(1, 5)}
    for d, rows in rows_by_date(pred, y).items():
        if len(rows) < 4:
            continue
        ordered = sorted_syms(rows, d)
        for q in range(1, 5):
            members = [v for r, (_, v, _) in enumerate(ordered, 1) if math.ceil(r * 4 / len(ordered)) == q]
            per_q[q][d] = np.mean(members)
    for q in range(1, 5):
        want = staggered_oracle(per_q[q], h)
        assert list(got.index) == list(want)
        np.testing.assert_allclose(got[q].values, np.array(list(want.values())) - 1.0, rtol=1e-12)


@pytest.mark.parametrize("h", [1, 4])
def test_spread_series_matches_loop(h):
    pred, y = make_panel(n_dates=40, n_sym=33)
    got = D.spread_series(pred, y, h, quantile=0.2, cost_bps=0.0)
    spread = {}
    for d, rows in rows_by_date(pred, y).items():
        if len(rows) < 5:
            continue
        ordered = sorted_syms(rows, d)
        k = max(1, int(len(ordered) * 0.2))
        spread[d] = np.mean([v for _, v, _ in ordered[-k:]]) - np.mean([v for _, v, _ in ordered[:k]])
    assert list(got.index) == list(spread)
    np.testing.assert_allclose(got["spread"].values, list(spread.values()), rtol=1e-12)
    np.testing.assert_allclose(got["cumulative"].values,
                               np.array(list(staggered_oracle(spread, h).values())) - 1.0, rtol=1e-12)
    np.testing.assert_allclose(got["net"].values, got["spread"].values)  # no cost
    net = D.spread_series(pred, y, h, quantile=0.2, cost_bps=25.0)
    assert (net["net"] <= net["spread"]).all() and net["cumulative_net"].iloc[-1] < net["cumulative"].iloc[-1]


def test_monthly_ic_matches_loop():
    rng = np.random.default_rng(1)
    days = pd.bdate_range("2018-11-15", "2020-02-10")
    ic = pd.Series(rng.normal(0.02, 0.1, len(days)), days)
    ic.iloc[::7] = np.nan
    got, n = D.monthly_ic(ic), D.monthly_ic(ic, how="count")
    sums, counts = {}, {}
    for d, v in ic.items():
        if not np.isnan(v):
            sums[(d.year, d.month)] = sums.get((d.year, d.month), 0.0) + v
            counts[(d.year, d.month)] = counts.get((d.year, d.month), 0) + 1
    assert list(got.index) == [2018, 2019, 2020] and list(got.columns) == list(range(1, 13))
    for y in (2018, 2019, 2020):
        for m in range(1, 13):
            if (y, m) in sums:
                assert got.loc[y, m] == pytest.approx(sums[(y, m)] / counts[(y, m)])
                assert n.loc[y, m] == counts[(y, m)]
            else:
                assert np.isnan(got.loc[y, m]) and n.loc[y, m] == 0
    with pytest.raises(ValueError, match="how"):
        D.monthly_ic(ic, how="median")


@pytest.mark.parametrize("lag", [1, 3])
def test_rank_autocorrelation_matches_scipy(lag):
    pred, _ = make_panel(n_dates=30, n_sym=15, nan_frac=0.2)
    # a persistent signal so the correlation is far from 0
    pred = pred + 3 * pd.Series(np.tile(np.linspace(-1, 1, 15), 30), pred.index)
    got, mean = D.rank_autocorrelation(pred, lag)
    by_date = {d: pred.xs(d, level=0).dropna() for d in pred.index.levels[0]}
    dates = [d for d, s in by_date.items() if len(s)]  # the empty date is not a date of the signal
    want = {}
    for i in range(lag, len(dates)):
        a, b = by_date[dates[i]], by_date[dates[i - lag]]
        common = sorted(set(a.index) & set(b.index))
        if len(common) >= 5 and a[common].nunique() > 1 and b[common].nunique() > 1:
            want[dates[i]] = stats.spearmanr(a[common].values, b[common].values)[0]
    assert list(got.index) == list(want)
    np.testing.assert_allclose(got.values, list(want.values()), rtol=1e-10)
    assert mean == pytest.approx(np.mean(list(want.values()))) and mean > 0.5
    with pytest.raises(ValueError, match="lag"):
        D.rank_autocorrelation(pred, 0)


def test_ic_decay_matches_scipy_and_matrix_newey_west():
    pred, y = make_panel(n_dates=60, n_sym=30)
    labels = {1: y, 5: y.groupby(level=1).shift(-2), 10: y * 0.5 + 0.001}
    got = D.ic_decay(pred, labels)
    assert list(got) == [1, 5, 10]
    for g, lab in labels.items():
        ics = []
        for d, rows in rows_by_date(pred, lab).items():
            p = np.array([r[0] for r in rows])
            v = np.array([r[1] for r in rows])
            if len(rows) >= 5 and np.ptp(p) > 0 and np.ptp(v) > 0:
                ics.append(stats.spearmanr(p, v)[0])
        x = np.array(ics)
        e, L = x - x.mean(), g - 1
        lagmat = np.abs(np.subtract.outer(np.arange(len(x)), np.arange(len(x))))
        se = math.sqrt(e @ np.where(lagmat <= L, 1.0 - lagmat / (L + 1.0), 0.0) @ e / len(x) ** 2)
        assert got[g]["n_days"] == len(x) and got[g]["nw_lags"] == L
        assert got[g]["rank_ic_mean"] == pytest.approx(x.mean(), rel=1e-10)
        assert got[g]["rank_ic_nw_se"] == pytest.approx(se, rel=1e-10)
        assert got[g]["rank_ic_nw_tstat"] == pytest.approx(x.mean() / se, rel=1e-10)


def nyse_like(start, end):
    d = pd.bdate_range(start, end)
    return d[~((d.month == 1) & (d.day == 1)) & ~((d.month == 12) & (d.day == 25))]


def test_partial_years():
    assert D.partial_years(nyse_like("2013-02-08", "2018-02-07")) == {2013, 2018}
    assert D.partial_years(nyse_like("2013-01-01", "2018-12-31")) == set()
    # Tokyo-like: closed Dec 31 - Jan 3; 2014 opens Mon Jan 6, 2016 closes Mon Dec 30 (2013: Dec 30)
    tokyo = nyse_like("2013-01-04", "2016-12-30")
    tokyo = tokyo[~((tokyo.month == 12) & (tokyo.day == 31)) & ~((tokyo.month == 1) & (tokyo.day <= 5)
                                                                  & (tokyo.year == 2014))]
    assert D.partial_years(tokyo) == set()
    assert D.partial_years(nyse_like("2015-01-13", "2015-12-31")) == {2015}  # 12 days late
    assert D.partial_years(nyse_like("2015-01-02", "2015-12-18")) == {2015}  # ends 13 days early
    assert D.partial_years(nyse_like("2015-01-02", "2015-12-18"), tolerance_days=14) == set()
    # a Fri/Sat-weekend calendar, tz-aware dates, a [us] unit and a MultiIndex level all work
    gulf = pd.date_range("2020-01-01", "2021-06-30", freq="D")
    gulf = gulf[~gulf.day_of_week.isin([4, 5])].tz_localize("Asia/Dubai")
    assert D.partial_years(gulf) == {2021}
    us = pd.DatetimeIndex(nyse_like("2016-03-01", "2017-12-29")).as_unit("us")
    idx = pd.MultiIndex.from_product([us, ["A", "B"]], names=["date", "symbol"])
    assert D.partial_years(idx.get_level_values("date")) == {2016}
    assert D.partial_years([]) == set()
