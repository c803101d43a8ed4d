"""Regime features are past-only; sector-neutral target oracle; walk-forward option runs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data import clean_bars, load_bars, load_securities, sector_map
from technic.features.batch import compute_features
from technic.labels import make_labels
from technic.models.regime import REGIME_FEATURES, market_regime, regime_columns, sector_neutral
from technic.research import BacktestConfig, walk_forward

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def data():
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz"))
    sec = load_securities(FIX / "securities_40.csv")
    return bars, sec, compute_features(bars, None, sec)


def test_regime_is_past_only(data):
    _, _, feats = data
    full = market_regime(feats)
    dates = full.index
    cut = dates[len(dates) // 2]
    part = market_regime(feats.loc[feats.index.get_level_values(0) <= cut])
    pd.testing.assert_frame_equal(full.loc[:cut], part)                 # truncating the future changes nothing
    ew = feats["ret_1"].groupby(level=0).mean()
    i = len(dates) - 1
    assert full["regime_vol_20"].iloc[i] == pytest.approx(ew.iloc[i - 19:i + 1].std() * np.sqrt(252))
    assert full["regime_trend_60"].iloc[i] == pytest.approx(ew.iloc[i - 59:i + 1].sum())
    cols = regime_columns(feats)
    assert list(cols.columns) == list(REGIME_FEATURES) and cols.index.equals(feats.index)


def test_sector_neutral_oracle():
    idx = pd.MultiIndex.from_product([[pd.Timestamp("2020-01-02")], list("abcdefg")], names=["date", "symbol"])
    ex = pd.Series([1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 5.0], index=idx)
    out = sector_neutral(ex, {"a": "X", "b": "X", "c": "X", "d": "Y", "e": "Y", "f": "Y"})
    np.testing.assert_allclose(out.to_numpy(), [-1, 0, 1, -10, 0, 10, 5])   # g: unknown sector, unchanged


def test_walk_forward_with_regime_and_sector_neutral(data):
    bars, sec, feats = data
    labels = make_labels(bars, (1, 5, 10, 20))
    cfg = BacktestConfig(horizons=(5,), models=("lgbm",), test_days=200, min_train_days=250, k_features=8,
                         max_train_rows=4000, n_estimators=15, shap_rows=50, n_threads=1, null=False,
                         regime=True, sector_neutral=True, selector_params={"sample_rows": 2000, "mi_rows": 500},
                         model_params={"lgbm": {"min_data_in_leaf": 100}})
    res = walk_forward(feats, labels, cfg, sectors=sector_map(sec))
    imp = res["importance"][5]["lgbm"]
    assert set(REGIME_FEATURES) <= set(imp)                             # forced into every fold
    assert res["predictions"][5]["lgbm"].notna().all()
