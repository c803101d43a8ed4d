"""Models: per-date preprocessing, LightGBM/XGBoost wrappers, baselines."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtri
from scipy.stats import rankdata

from technic.errors import TechnicError
from technic.models.baselines import baseline_predictions, equal_weight_metrics
from technic.models.gbm import LGBMModel, XGBModel, load_model, make_model
from technic.models.preprocess import cross_sectional_transform, rank_gauss


def _panel(n_dates=30, n_sym=50, p=4, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_dates)
    idx = pd.MultiIndex.from_product([dates, [f"S{i:02d}" for i in range(n_sym)]], names=["date", "symbol"])
    X = pd.DataFrame(rng.normal(size=(len(idx), p)), index=idx, columns=[f"f{j}" for j in range(p)])
    return X


def test_rank_gauss_matches_scipy_oracle_with_nan_ties_and_inf():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    X[:, 1] = np.round(X[:, 1])            # ties
    X[rng.random(60) < 0.2, 2] = np.nan     # missing
    X[3, 3], X[4, 3] = np.inf, -np.inf      # non-finite -> missing
    X[:, 4] = np.nan                        # all missing
    Z = rank_gauss(X)
    for j in range(5):
        col = np.where(np.isfinite(X[:, j]), X[:, j], np.nan)
        ok = np.isfinite(col)
        expect = np.full(60, np.nan)
        if ok.any():
            expect[ok] = ndtri((rankdata(col[ok]) - 0.5) / ok.sum())
        np.testing.assert_array_equal(Z[:, j], expect)
    assert np.isnan(Z[~np.isfinite(X)]).all()  # NaN policy: missing stays missing


def test_rank_gauss_table_lookup_equals_ndtri_of_each_rank():
    """The per-count ndtri tables (``preprocess.ndtri_table``) give the same values as ndtri of each
    entry: columns with different finite counts in one call (several tables), ties of every size,
    +-inf, all-missing columns, a cleared and a reused cache."""
    from technic.models import preprocess
    rng = np.random.default_rng(12)
    for i in range(60):
        k, p = int(rng.integers(1, 120)), int(rng.integers(1, 9))
        X = rng.normal(size=(k, p))
        X[:, ::2] = np.round(X[:, ::2] * rng.integers(1, 4))
        X[rng.random((k, p)) < rng.random((1, p)) * 0.7] = np.nan   # a different count per column
        X[rng.random((k, p)) < 0.03] = np.inf
        X[rng.random((k, p)) < 0.03] = -np.inf
        if i % 5 == 0:
            X[:, 0] = np.nan
        if i % 3 == 0:
            preprocess._NDTRI_TABLES.clear()
        Z = rank_gauss(X)
        for j in range(p):
            ok = np.isfinite(X[:, j])
            expect = np.full(k, np.nan)
            expect[ok] = ndtri((rankdata(X[ok, j]) - 0.5) / ok.sum())
            np.testing.assert_array_equal(Z[:, j], expect)
    assert len(preprocess.ndtri_table(7)) == 13 and preprocess.ndtri_table(1).tolist() == [0.0]


def test_average_ranks_match_scipy_rankdata_on_random_shapes():
    """The compiled rank pass after numpy's sort: every shape, missing share, tie pattern and
    non-finite value against scipy's rankdata of each column's finite values."""
    from technic.models.preprocess import average_ranks
    rng = np.random.default_rng(11)
    for _ in range(40):
        k, p = int(rng.integers(1, 300)), int(rng.integers(1, 12))
        X = rng.normal(size=(k, p))
        X[:, ::2] = np.round(X[:, ::2] * 3)                       # ties
        X[rng.random((k, p)) < rng.random() * 0.6] = np.nan
        X[rng.random((k, p)) < 0.03] = np.inf
        X[rng.random((k, p)) < 0.03] = -np.inf
        R = average_ranks(X)
        for j in range(p):
            ok = np.isfinite(X[:, j])
            expect = np.full(k, np.nan)
            expect[ok] = rankdata(X[ok, j])
            np.testing.assert_array_equal(R[:, j], expect)


def test_rank_gauss_is_row_order_invariant_bitwise():
    X = np.random.default_rng(2).normal(size=(200, 7))
    X[::7, 0] = np.nan
    X[:, 1] = np.round(X[:, 1] * 2)
    perm = np.random.default_rng(3).permutation(200)
    assert np.array_equal(rank_gauss(X[perm]), rank_gauss(X)[perm], equal_nan=True)
    assert np.array_equal(rank_gauss(X[1:2]), np.zeros((1, 7)))  # a lone row sits at the centre
    u = rank_gauss(X, "rank")
    assert np.nanmin(u) > -0.5 and np.nanmax(u) < 0.5


def test_cross_sectional_transform_is_per_date():
    X = _panel()
    Z = cross_sectional_transform(X)
    for d in X.index.get_level_values(0).unique()[:3]:
        np.testing.assert_array_equal(Z.loc[d].to_numpy(), rank_gauss(X.loc[d].to_numpy()))
    # changing a later date does not change an earlier one (stateless per date)
    X2 = X.copy()
    X2.iloc[-50:] = 99.0
    Z2 = cross_sectional_transform(X2)
    np.testing.assert_array_equal(Z.iloc[:-50].to_numpy(), Z2.iloc[:-50].to_numpy())


def _signal_data(n=6000, p=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[rng.random((n, p)) < 0.05] = np.nan
    y = 0.3 * np.nan_to_num(X[:, 0]) - 0.2 * np.nan_to_num(X[:, 1]) + rng.normal(size=n)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=n // 50).values, 50)
    return X, y, dates


@pytest.mark.parametrize("cls", [LGBMModel, XGBModel])
def test_gbm_deterministic_roundtrip_and_shap_additivity(cls):
    X, y, dates = _signal_data()
    kw = dict(params={"min_data_in_leaf": 50} if cls is LGBMModel else {"min_child_weight": 50.0},
              n_estimators=60, early_stopping_rounds=10, gap_days=5, n_threads=1)
    a = cls(**kw).fit(X, y, dates)
    b = cls(**kw).fit(X, y, dates)
    pa = a.predict(X[:500])
    assert np.array_equal(pa, b.predict(X[:500]))                    # fixed seeds: same model
    assert 1 <= a.best_iteration_ <= 60
    c = load_model(a.kind, a.to_bytes(), n_threads=1)
    assert np.array_equal(c.predict(X[:500]), pa)                    # native-format round trip
    contrib = a.contributions(X[:500])
    assert contrib.shape == (500, X.shape[1] + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), pa, rtol=1e-5, atol=1e-5)
    assert np.corrcoef(pa, y[:500])[0, 1] > 0.1                      # learns the planted signal
    imp = a.gain_importance()
    assert imp.shape == (X.shape[1],) and np.argmax(imp) in (0, 1)


def test_gbm_without_enough_dates_fits_without_early_stopping():
    X, y, _ = _signal_data(n=600)
    m = LGBMModel(params={"min_data_in_leaf": 20}, n_estimators=5, n_threads=1).fit(X, y, dates=np.zeros(600))
    assert m.best_iteration_ == 5


def test_make_model_rejects_unknown_names():
    with pytest.raises(TechnicError, match="unknown model 'rf'"):
        make_model("rf")


def test_baselines():
    X = _panel(p=2).rename(columns={"f0": "mom_12_1", "f1": "mom_5"})
    p = baseline_predictions(X)
    assert set(p) == {"momentum_12_1", "reversal_5"}
    np.testing.assert_array_equal(p["reversal_5"].to_numpy(), -X["mom_5"].to_numpy())
    fwd = pd.Series(0.001, index=X.index)
    m = equal_weight_metrics(fwd, horizon=5)
    assert np.isnan(m["rank_ic_mean"]) and m["n_days"] == 30
    assert m["long_only_ann_return"] == pytest.approx(1.001 ** (252 / 5) - 1)
    assert m["long_only_max_drawdown"] == 0.0


@pytest.mark.parametrize("cls", [LGBMModel, XGBModel])
def test_gbm_sizes_fixed_or_by_validation_rank_ic(cls):
    """stop_metric none: exactly n_estimators trees; rank_ic: the checkpoint with the best mean daily RankIC
    on the inner validation slice (recomputed here with pandas), never fewer than min_trees."""
    X = _panel(n_dates=80, n_sym=60, seed=3)
    rng = np.random.default_rng(4)
    y = X["f0"].to_numpy() * 0.3 + rng.normal(size=len(X))
    dates = X.index.get_level_values(0).to_numpy()
    fixed = cls(n_estimators=40, stop_metric="none", n_threads=1).fit(X.to_numpy(), y, dates)
    assert fixed.best_iteration_ == 40
    m = cls(n_estimators=60, stop_metric="rank_ic", min_trees=20, step=10, gap_days=3, n_threads=1)
    m.fit(X.to_numpy(), y, dates)
    assert sorted(m.checkpoint_scores_) == [20, 30, 40, 50, 60] and m.best_iteration_ >= 20
    from technic.validation import inner_time_split
    _, v = inner_time_split(dates, 0.2, 3)
    df = pd.DataFrame({"p": m._predict_k(X.to_numpy()[v], 30), "y": y[v], "d": dates[v]})
    ic30 = df.groupby("d").apply(lambda g: g["p"].corr(g["y"], method="spearman")).mean()
    assert m.checkpoint_scores_[30] == pytest.approx(ic30, abs=1e-12)
    assert m.best_iteration_ == max(m.checkpoint_scores_, key=lambda k: (m.checkpoint_scores_[k], -k))
