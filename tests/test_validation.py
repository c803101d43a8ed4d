"""Walk-forward splitter: purge, embargo, distinct-date grouping, error messages."""

import numpy as np
import pandas as pd
import pytest

from technic.validation import WalkForwardSplit, inner_time_split, purged_kfold


def panel(n_dates=400, n_sym=3, seed=0):
    dates = pd.bdate_range("2015-01-01", periods=n_dates)
    idx = pd.MultiIndex.from_product([dates, [f"S{i}" for i in range(n_sym)]], names=["date", "symbol"])
    # drop a few random rows so dates have unequal symbol counts
    rng = np.random.default_rng(seed)
    keep = rng.random(len(idx)) > 0.05
    return pd.DataFrame({"x": rng.normal(size=keep.sum())}, index=idx[keep])


def date_pos(X):
    d = X.index.get_level_values("date")
    uniq = np.unique(d.values)
    return np.searchsorted(uniq, d.values), uniq


def test_expanding_folds_purge_and_coverage():
    X = panel()
    cv = WalkForwardSplit(min_train_days=100, test_days=50, purge_days=5, horizon=5)
    pos, uniq = date_pos(X)
    folds = list(cv.split(X))
    assert len(folds) == cv.get_n_splits(X) == int(np.ceil((400 - 105) / 50))
    tested = []
    for k, (tr, te) in enumerate(folds):
        tr_d, te_d = pos[tr], pos[te]
        assert tr_d.min() == 0  # expanding
        # exactly purge_days distinct dates between train end and test start
        assert te_d.min() - tr_d.max() - 1 == 5
        assert te_d.min() == 105 + 50 * k
        # all symbols of a date go together
        assert set(np.flatnonzero(np.isin(pos, te_d))) == set(te)
        assert set(np.flatnonzero(np.isin(pos, tr_d))) == set(tr)
        tested.extend(np.unique(te_d))
    assert tested == list(range(105, 400))  # contiguous, non-overlapping test blocks
    assert len(folds[0][0]) > 0 and len(np.unique(pos[folds[0][0]])) == 100


def test_no_training_label_overlaps_test_period():
    """Label at d spans (d, d+h]; test returns start at the first test date."""
    X = panel(300)
    h = 10
    cv = WalkForwardSplit(min_train_days=60, test_days=30, purge_days=h, horizon=h)
    pos, _ = date_pos(X)
    for tr, te in cv.split(X):
        assert pos[tr].max() + h < pos[te].min()


def test_rolling_window_and_fold_table():
    X = panel()
    cv = WalkForwardSplit(train_days=120, min_train_days=100, test_days=63, purge_days=5)
    pos, uniq = date_pos(X)
    for tr, te in cv.split(X):
        n_train = len(np.unique(pos[tr]))
        assert 100 <= n_train <= 120
        assert pos[te].min() - pos[tr].max() - 1 == 5
    table = cv.folds(X)
    assert list(table["n_test_dates"])[:-1] == [63] * (len(table) - 1)
    assert table["test_start"].iloc[0] == uniq[105]
    assert (table["train_end"] < table["test_start"]).all()


def test_dates_argument_and_bounds():
    X = panel()
    d = X.index.get_level_values("date")
    cv = WalkForwardSplit(min_train_days=50, test_days=20, start="2015-09-01", end="2015-12-31")
    folds = list(cv.split(dates=d.values))
    test_dates = d[np.concatenate([te for _, te in folds])]
    assert test_dates.min() >= pd.Timestamp("2015-09-01")
    assert test_dates.max() <= pd.Timestamp("2015-12-31")
    assert [len(t) for t in folds[0]] == [len(t) for t in next(iter(cv.split(X)))]


def test_purge_shorter_than_horizon_raises():
    with pytest.raises(ValueError, match="purge_days=3.*horizon=5"):
        list(WalkForwardSplit(purge_days=3, horizon=5).split(panel()))


def test_too_few_dates_message():
    X = panel(100)
    with pytest.raises(ValueError, match=r"100 distinct dates.*257"):
        list(WalkForwardSplit().split(X))


def test_embargo_guard_band_in_purged_kfold():
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=100).values, 2)
    uniq = np.unique(dates)
    for tr, te in purged_kfold(dates, n_splits=5, purge_days=5, embargo_days=3):
        lo, hi = np.searchsorted(uniq, dates[te]).min(), np.searchsorted(uniq, dates[te]).max()
        trp = np.searchsorted(uniq, dates[tr])
        assert not np.any((trp >= lo - 5) & (trp <= hi + 3))
        assert len(te) == 40


def test_inner_time_split():
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=100).values, 3)
    fit, valid = inner_time_split(dates, valid_frac=0.2, gap_days=5)
    uniq = np.unique(dates)
    fp, vp = np.searchsorted(uniq, dates[fit]), np.searchsorted(uniq, dates[valid])
    assert vp.min() == 80 and vp.max() == 99 and len(valid) == 60
    assert fp.max() == 74  # 5 gap dates: 75..79
    with pytest.raises(ValueError, match="3 distinct dates"):
        inner_time_split(dates[:9], valid_frac=0.5, gap_days=5)


def test_forward_blocks_predict_each_block_from_the_past_only():
    from technic.validation import forward_blocks
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=100).values, 3)
    splits = list(forward_blocks(dates, n_splits=3, purge_days=4))
    assert len(splits) == 3
    uniq = np.unique(dates)
    held = []
    for tr, ho in splits:
        assert dates[tr].max() < dates[ho].min()                               # the past only
        gap = ((uniq > dates[tr].max()) & (uniq < dates[ho].min())).sum()
        assert gap == 4                                                        # purge in between
        held.append(np.unique(dates[ho]))
    first = np.unique(dates)[: 100 // 4]
    assert not set(np.concatenate(held)) & set(first)                          # block 0 never predicted
    assert len(np.concatenate(held)) == 100 - len(first)
