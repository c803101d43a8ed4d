"""Win-probability meta-model: calibration oracles, Brier formula, registry round trip, Scorer.win_prob."""

from pathlib import Path

import numpy as np
import pytest

from technic.data import clean_bars, load_bars, load_securities
from technic.features.batch import compute_features
from technic.models.meta import Calibrator, WinProbModel, brier, evaluate, make_targets, reliability_curve
from technic.models.scoring import load_scorer
from technic.registry import Registry
from technic.research import BacktestConfig
from technic.training import train_and_register

FIX = Path(__file__).parent / "fixtures"


def test_brier_and_reliability_match_direct_formulas():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=1000)
    y = (rng.uniform(size=1000) < p).astype(float)
    assert brier(p, y) == pytest.approx(sum((a - b) ** 2 for a, b in zip(p, y)) / 1000, rel=1e-12)
    r = reliability_curve(p, y, 10)
    assert sum(r["count"]) == 1000
    b3 = (p >= 0.3) & (p < 0.4)
    assert r["count"][3] == b3.sum() and r["observed"][3] == pytest.approx(y[b3].mean())
    assert r["mean_pred"][3] == pytest.approx(p[b3].mean())


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_is_monotone_bounded_and_round_trips(method):
    rng = np.random.default_rng(2)
    raw = rng.uniform(size=3000)
    y = (rng.uniform(size=3000) < 0.2 + 0.5 * raw ** 2).astype(float)
    c = Calibrator(method).fit(raw, y)
    grid = np.linspace(-0.5, 1.5, 401)
    q = c.predict(grid)
    assert (np.diff(q) >= -1e-12).all() and (q >= 0).all() and (q <= 1).all()
    back = Calibrator.from_dict(c.to_dict())
    np.testing.assert_array_equal(back.predict(grid), q)
    assert brier(c.predict(raw), y) < brier(raw, y)          # calibrated beats the raw score here


def test_targets():
    dates = np.repeat(np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"), 20)
    ex = np.r_[np.arange(20) - 9.5, np.arange(20) - 9.5]
    ex[0] = np.nan
    t = make_targets(ex, dates)
    assert np.isnan(t["pos"][0]) and np.nansum(t["pos"][:20]) == 10 and t["top10"][20:].sum() == 2


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz"))
    sec = load_securities(FIX / "securities_40.csv")
    cfg = BacktestConfig(horizons=(5,), models=("lgbm", "xgb", "stack"), test_days=200, min_train_days=250,
                         k_features=8, max_train_rows=5000, n_estimators=15, null=False, blend=False,
                         shap_rows=50, n_threads=1, selector_params={"sample_rows": 2000, "mi_rows": 500},
                         model_params={"lgbm": {"min_data_in_leaf": 100}, "xgb": {"min_child_weight": 100.0}},
                         win_prob_params={"n_estimators": 20})
    root = tmp_path_factory.mktemp("reg")
    res = train_and_register(bars, None, sec, registry_root=root, cfg=cfg, promote_if_empty=True)
    return root, res, compute_features(bars, None, sec)


def test_scorer_serves_stack_and_calibrated_win_prob(bundle):
    root, res, feats = bundle
    s = load_scorer(root)
    files = Registry(root).show(res["version"])["files"]
    assert {"h5_meta_pos.txt", "h5_meta_top10.txt", "h5_meta_calibration.json"} <= set(files)
    assert res["metrics"] and s.seq_len == 0
    day = feats.index.get_level_values(0).unique()[-1]
    X = feats.loc[day][s.feature_names].to_numpy(np.float64)
    p = s.win_prob(X)
    assert p.shape == (len(X),) and ((p >= 0) & (p <= 1)).all()
    np.testing.assert_array_equal(p, s.win_prob(X.copy()))
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_array_equal(s.win_prob(X[perm]), p[perm])            # per-timestamp, order-free
    allp = s.win_probs(X)[5]
    assert set(allp) == {"pos", "top10"} and allp["top10"].mean() < allp["pos"].mean()
    sc = s.score(X)[5]
    e = s.ensembles[5]
    coef, b = e.stacker_.coef_, e.stacker_.intercept_
    from technic.models.preprocess import rank_gauss
    Z = rank_gauss(X)
    cols = [s.feature_names.index(f) for f in e.features_]
    P = np.column_stack([m.predict(Z[:, cols]) for m in e.models_.values()])
    np.testing.assert_allclose(sc, P @ coef + b, rtol=0, atol=1e-12)     # the score is the stack
    assert (coef >= 0).all() and s.served == {5: "stack"}


def test_evaluate_against_base_rate():
    rng = np.random.default_rng(3)
    dates = np.repeat(np.arange("2020-01-01", "2020-03-01", dtype="datetime64[D]"), 50)
    ex = rng.normal(size=len(dates))
    out = evaluate({"pos": np.full(len(ex), 0.5)}, ex, dates)
    assert out["pos"]["brier"] == pytest.approx(0.25) and out["pos"]["n"] == len(ex)


def test_win_prob_model_is_deterministic():
    rng = np.random.default_rng(4)
    dates = np.repeat(np.arange("2020-01-01", "2020-06-01", dtype="datetime64[D]"), 30)
    X = rng.normal(size=(len(dates), 4))
    ex = X[:, 0] * 0.3 + rng.normal(size=len(dates))
    a = WinProbModel(n_estimators=10, n_threads=1).fit(X, ex, dates).predict_proba(X)
    b = WinProbModel(n_estimators=10, n_threads=1).fit(X, ex, dates).predict_proba(X)
    assert all(np.array_equal(a[t], b[t]) for t in a)
