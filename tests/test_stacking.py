"""Out-of-fold stacking: OOF rows never come from a model that saw their (purged) block; Ridge oracle."""

from pathlib import Path

import numpy as np
import pytest

from technic.data import clean_bars, load_bars, load_securities
from technic.features.batch import compute_features
from technic.labels import make_labels
from technic.models.stacking import RidgeStacker, compare, oof_predictions
from technic.research import BacktestConfig, walk_forward

FIX = Path(__file__).parent / "fixtures"


class Spy:
    """A 'model' that records the dates it was fitted on and predicts their count."""

    seen = []

    def fit(self, A, y, dates):
        self.dates_ = np.unique(dates)
        Spy.seen.append(self.dates_)
        return self

    def predict(self, A):
        return np.full(len(A), float(len(self.dates_)))


def test_oof_predictions_never_use_their_own_block_and_respect_purge():
    dates = np.repeat(np.arange("2020-01-01", "2020-03-01", dtype="datetime64[D]"), 3)
    y = np.arange(len(dates), dtype=float)
    Spy.seen = []
    P, names = oof_predictions(lambda s: {"spy": Spy()}, np.zeros((len(y), 1)), y, dates, n_splits=3,
                               purge_days=4, embargo_days=2, forward=False)
    assert names == ["spy"] and np.isfinite(P).all()
    uniq = np.unique(dates)
    edges = np.linspace(0, len(uniq), 4).astype(int)
    for (lo, hi), seen in zip(zip(edges[:-1], edges[1:]), Spy.seen):
        band = uniq[max(lo - 4, 0): hi + 2]
        assert not np.isin(seen, band).any()                      # held-out block, purge and embargo excluded
        rows = np.isin(dates, uniq[lo:hi])
        assert (P[rows, 0] == len(seen)).all()                    # each row predicted by its own fold's model


def test_ridge_stacker_matches_closed_form_and_nonnegative():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(500, 3))
    y = P @ np.array([0.5, 0.2, -0.3]) + 0.1 + rng.normal(scale=0.1, size=500)
    s = RidgeStacker(alpha=2.0, positive=False).fit(P, y)
    Pc, yc = P - P.mean(0), y - y.mean()
    w = np.linalg.solve(Pc.T @ Pc + 2.0 * np.eye(3), Pc.T @ yc)           # ridge oracle (centred, no intercept penalty)
    np.testing.assert_allclose(s.coef_, w, rtol=1e-8)
    assert abs(s.intercept_ - (y.mean() - P.mean(0) @ w)) < 1e-8
    nn = RidgeStacker(alpha=2.0, positive=True).fit(P, y)
    assert (nn.coef_ >= 0).all() and nn.coef_[2] == 0
    again = RidgeStacker.from_dict(nn.to_dict())
    np.testing.assert_array_equal(again.predict(P), nn.predict(P))


def test_compare_table():
    summ = {"lgbm": {"rank_ic_mean": 0.02}, "xgb": {"rank_ic_mean": 0.03}, "ensemble": {"rank_ic_mean": 0.025},
            "stack": {"rank_ic_mean": 0.028}}
    c = compare(summ, ["lgbm", "xgb"])
    assert c["best_single"] == "xgb" and c["best_single_value"] == 0.03 and c["stack_beats_both"] is False


def test_walk_forward_with_stack_is_deterministic():
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz"))
    feats = compute_features(bars, None, load_securities(FIX / "securities_40.csv"))
    labels = make_labels(bars, (1, 5, 10, 20))
    cfg = BacktestConfig(horizons=(5,), models=("lgbm", "xgb", "stack"), test_days=200, min_train_days=250,
                         k_features=8, max_train_rows=4000, n_estimators=15, shap_rows=50, blend=False, null=False,
                         n_threads=1, win_prob=False, selector_params={"sample_rows": 2000, "mi_rows": 500},
                         model_params={"lgbm": {"min_data_in_leaf": 100}, "xgb": {"min_child_weight": 100.0}})
    a = walk_forward(feats, labels, cfg)
    b = walk_forward(feats, labels, cfg)
    pa, pb = a["predictions"][5]["stack"], b["predictions"][5]["stack"]
    assert pa.notna().all() and np.array_equal(pa.to_numpy(), pb.to_numpy())
    assert all("stack_coef" in r for r in a["folds"])
    assert "ensemble" in a["predictions"][5]


def test_all_zero_nonnegative_weights_fall_back_to_equal_weight():
    rng = np.random.default_rng(3)
    y = rng.normal(size=400)
    P = np.column_stack([-y + rng.normal(scale=0.1, size=400), -2 * y])   # both anti-correlated
    s = RidgeStacker(alpha=1.0, positive=True).fit(P, y)
    assert s.fallback_ == "equal_weight"
    np.testing.assert_array_equal(s.predict(P), P.mean(axis=1))
    back = RidgeStacker.from_dict(s.to_dict())
    assert back.fallback_ == "equal_weight" and np.array_equal(back.predict(P), s.predict(P))
    assert RidgeStacker(positive=False).fit(P, y).fallback_ is None      # signed weights: a real fit


def test_forward_oof_predictions_use_only_earlier_dates():
    dates = np.repeat(np.arange("2020-01-01", "2020-03-01", dtype="datetime64[D]"), 3)
    y = np.arange(len(dates), dtype=float)
    Spy.seen = []
    P, _ = oof_predictions(lambda s: {"spy": Spy()}, np.zeros((len(y), 1)), y, dates, n_splits=3, purge_days=4)
    uniq = np.unique(dates)
    edges = np.linspace(0, len(uniq), 5).astype(int)
    assert np.isnan(P[np.isin(dates, uniq[:edges[1]]), 0]).all()           # the first block is never predicted
    for (lo, hi), seen in zip(zip(edges[1:-1], edges[2:]), Spy.seen):
        assert seen.max() < uniq[lo - 4]                                       # the past, minus the purge
        assert (P[np.isin(dates, uniq[lo:hi]), 0] == len(seen)).all()
