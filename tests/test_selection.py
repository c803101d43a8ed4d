"""Feature selection ensemble and SHAP helpers."""

import numpy as np
import pandas as pd
import pytest

from technic.explain import global_importance, top_contributions
from technic.selection import FeatureSelector, jaccard, selection_stability


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"noise{j}" for j in range(8)])
    X.insert(0, "good_a", rng.normal(size=n))
    X.insert(1, "good_b", rng.normal(size=n))
    X["good_a_copy"] = X["good_a"] + 1e-3 * rng.normal(size=n)   # redundant with good_a
    X["constant"] = 1.0
    X["all_nan"] = np.nan
    y = 0.5 * X["good_a"] - 0.4 * X["good_b"] + rng.normal(size=n)
    return X, y.to_numpy()


def test_selector_finds_signal_drops_redundant_constant_and_missing():
    X, y = _data()
    s = FeatureSelector(k=3, max_corr=0.9, sample_rows=3000, mi_rows=1500, n_threads=1).fit(X, y)
    assert {"good_a", "good_b"} <= set(s.selected_) or {"good_a_copy", "good_b"} <= set(s.selected_)
    assert not {"good_a", "good_a_copy"} <= set(s.selected_)          # correlation filter
    assert {"constant", "all_nan"} <= set(s.dropped_)
    assert list(s.scores_.columns) == ["mi", "lgbm", "lasso", "corr"]
    assert s.avg_rank_.index[0] in ("good_a", "good_a_copy")
    order = list(X.columns)
    assert s.selected_ == sorted(s.selected_, key=order.index)        # registry order


def test_selector_is_deterministic():
    X, y = _data(seed=1)
    a = FeatureSelector(k=4, sample_rows=2000, mi_rows=1000, n_threads=1).fit(X, y)
    b = FeatureSelector(k=4, sample_rows=2000, mi_rows=1000, n_threads=1).fit(X, y)
    assert a.selected_ == b.selected_
    pd.testing.assert_frame_equal(a.scores_, b.scores_)


def test_selector_rejects_fold_without_usable_features():
    X = pd.DataFrame({"c": np.ones(100), "n": np.nan})
    with pytest.raises(ValueError, match="no usable feature"):
        FeatureSelector(n_threads=1).fit(X, np.arange(100.0))


def test_stability_is_mean_pairwise_jaccard():
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert selection_stability([["a", "b"], ["a", "b"], ["a", "b"]]) == 1.0
    sets = [{"a", "b"}, {"b", "c"}, {"a", "b", "c"}]
    expect = np.mean([1 / 3, 2 / 3, 2 / 3])
    assert selection_stability(sets) == pytest.approx(expect)
    assert np.isnan(selection_stability([{"a"}]))


def test_top_contributions_and_global_importance():
    names = ["x", "y", "z"]
    contrib = np.array([[0.1, -0.5, 0.2, 9.0], [0.0, 0.3, -0.3, 9.0]])  # last column = bias
    X = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]])
    top = top_contributions(contrib, X, names, top_k=2)
    assert top[0] == [("y", 2.0, -0.5), ("z", 3.0, 0.2)]
    assert [t[0] for t in top[1]] == ["y", "z"]                         # ties keep feature order
    assert np.isnan(top[1][0][1])
    assert len(top_contributions(contrib, X, names, top_k=10)[0]) == 3
    imp = global_importance(contrib, names)
    assert list(imp) == ["y", "z", "x"] and imp["y"] == pytest.approx(0.4)
