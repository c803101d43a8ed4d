"""Tie-breaking of per-date orderings (hash of (date, symbol)) and the tie share, against loops."""

import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from technic.evaluation import metrics as M
from technic.evaluation.portfolio import top_bottom_masks
from technic.evaluation.ties import ordered_rank, tie_key, tie_share


def tied_panel(n_dates=200, n_sym=50, n_values=1, seed=0):
    """Predictions taking ``n_values`` distinct values (1 = every prediction tied)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-02", periods=n_dates)
    idx = pd.MultiIndex.from_product([dates, [f"S{i:03d}" for i in range(n_sym)]], names=["date", "symbol"])
    return pd.Series(rng.integers(0, n_values, size=len(idx)).astype(float), idx)


def test_all_tied_books_are_not_alphabetical():
    pred = tied_panel()
    top, bottom = top_bottom_masks(pred, 0.1)  # k = 5 of 50
    assert not (top & bottom).any()
    assert (top.groupby(level=0).sum() == 5).all() and (bottom.groupby(level=0).sum() == 5).all()
    sym_pos = pred.index.get_level_values(1).str[1:].astype(int)
    first_k = sym_pos < 5
    # rank(method="first") would put S000..S004 in both legs on every date
    assert (top & first_k).sum() < 0.3 * top.sum() and (bottom & first_k).sum() < 0.3 * bottom.sum()
    # every symbol is picked about k/n = 10 % of the dates, each leg (binomial 200 x 0.1: 20 +- 4.2)
    picks = top.groupby(level=1).sum()
    assert picks.min() >= 5 and picks.max() <= 40
    # the choice is redrawn each date
    sets = {tuple(top.xs(d, level=0).loc[lambda s: s].index) for d in pred.index.levels[0]}
    assert len(sets) > 190


def test_tie_break_independent_of_row_order_and_date_unit():
    pred = tied_panel(n_dates=30, n_values=3)
    top, bottom = top_bottom_masks(pred, 0.2)
    shuffled = pred.sample(frac=1.0, random_state=1)
    top2, bottom2 = top_bottom_masks(shuffled, 0.2)
    pd.testing.assert_series_equal(top2.reindex(pred.index), top)
    pd.testing.assert_series_equal(bottom2.reindex(pred.index), bottom)
    us = pred.copy()
    us.index = us.index.set_levels(us.index.levels[0].as_unit("us"), level=0)
    ns = pred.copy()
    ns.index = ns.index.set_levels(ns.index.levels[0].as_unit("ns"), level=0)
    np.testing.assert_array_equal(tie_key(us.index), tie_key(ns.index))


def test_tie_break_is_the_same_in_a_fresh_interpreter():
    pred = tied_panel(n_dates=5, n_sym=20)
    top, _ = top_bottom_masks(pred, 0.2)
    here = sorted(f"{d.date()} {s}" for d, s in top[top].index)
    code = ("import sys; sys.path.insert(0, '.'); from tests.test_ties import tied_panel;"
            "from technic.evaluation.portfolio import top_bottom_masks;"
            "t, _ = top_bottom_masks(tied_panel(n_dates=5, n_sym=20), 0.2);"
            "print('\\n'.join(sorted(f'{d.date()} {s}' for d, s in t[t].index)))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.split("\n")[:-1] == here


def oracle_order(pred):
    """Per date, symbols sorted by (pred, hash of (date, symbol)) with plain Python sorting."""
    keys = dict(zip(pred.index, tie_key(pred.index)))
    out = {}
    for (d, s), v in pred.items():
        if np.isfinite(v):
            out.setdefault(d, []).append((v, int(keys[(d, s)]), s))
    return {d: [s for _, _, s in sorted(rows)] for d, rows in out.items()}


def test_ordered_rank_and_masks_match_sorted_loop():
    pred = tied_panel(n_dates=15, n_sym=23, n_values=4, seed=3)
    pred[np.random.default_rng(4).random(len(pred)) < 0.1] = np.nan
    rank, n = ordered_rank(pred)
    top, bottom = top_bottom_masks(pred.dropna(), 0.2)
    for d, syms in oracle_order(pred).items():
        got = rank.xs(d, level=0).dropna().sort_values()
        assert list(got.index) == syms and list(got.values) == list(range(1, len(syms) + 1))
        assert (n.xs(d, level=0) == len(syms)).all()
        k = max(1, int(len(syms) * 0.2))
        assert set(top.xs(d, level=0).loc[lambda s: s].index) == set(syms[-k:])
        assert set(bottom.xs(d, level=0).loc[lambda s: s].index) == set(syms[:k])
    assert rank[pred.isna()].isna().all()


def test_quantile_returns_with_ties_match_loop():
    pred = tied_panel(n_dates=12, n_sym=31, n_values=3, seed=5)
    y = pd.Series(np.random.default_rng(6).normal(size=len(pred)), pred.index)
    got = M.quantile_returns(pred, y, n_quantiles=4)
    for d, syms in oracle_order(pred).items():
        yd = y.xs(d, level=0)
        for q in range(1, 5):
            members = [s for r, s in enumerate(syms, 1) if int(np.ceil(r * 4 / len(syms))) == q]
            assert got.loc[d, q] == pytest.approx(yd[members].mean())


def test_all_tied_quantiles_are_flat_on_alphabetical_returns():
    # return = alphabetical position: an alphabetical tie-break would give a perfect decile slope
    pred = tied_panel(n_dates=300, n_sym=50)
    y = pd.Series(pred.index.get_level_values(1).str[1:].astype(float) / 49, pred.index)
    profile = M.quantile_returns(pred, y, 10).mean()
    assert profile.max() - profile.min() < 0.1  # alphabetical: 0.9


def test_tie_share_matches_counter_loop():
    pred = tied_panel(n_dates=20, n_sym=12, n_values=6, seed=7)
    pred[np.random.default_rng(8).random(len(pred)) < 0.15] = np.nan
    d_thin = pred.index.levels[0][4]
    pred.loc[d_thin] = np.nan
    pred.loc[(d_thin, "S000")] = 1.0  # a lone finite prediction: the date is left out
    per_date, mean = tie_share(pred)
    want = {}
    for d in pred.index.levels[0]:
        vals = [v for v in pred.xs(d, level=0).values if not np.isnan(v)]
        if len(vals) >= 2:
            c = Counter(vals)
            want[d] = sum(1 for v in vals if c[v] > 1) / len(vals)
    assert list(per_date.index) == sorted(want) and d_thin not in per_date.index
    np.testing.assert_allclose(per_date.values, [want[d] for d in sorted(want)])
    assert mean == pytest.approx(np.mean(list(want.values())))
    assert tie_share(tied_panel(n_dates=3))[1] == 1.0
    rng = np.random.default_rng(0)
    assert tie_share(pd.Series(rng.normal(size=60), tied_panel(n_dates=3, n_sym=20).index))[1] == 0.0


def test_average_rank_matches_scipy_rankdata_per_date():
    from scipy.stats import rankdata
    pred = tied_panel(n_dates=25, n_sym=17, n_values=5, seed=9)
    pred[np.random.default_rng(10).random(len(pred)) < 0.2] = np.nan
    pred = pred.sample(frac=1.0, random_state=3)  # any row order
    got = M.average_rank(pred)
    for d in pred.index.get_level_values(0).unique():
        p = pred.xs(d, level=0).dropna()
        want = pd.Series(rankdata(p.values, method="average"), p.index)
        pd.testing.assert_series_equal(got.xs(d, level=0).dropna().reindex(want.index), want, check_names=False)
    assert got[pred.isna()].isna().all()
