"""Registry, batch evaluator, parity, truncation (leakage) and sanity tests.

The fixture is a 12-symbol x 408-day cut of the dev data (2014-01 to
2015-08) chosen to contain its defects: the AOS high<low bar, the DHR/O
March-2015 gap, the stale rows of 2014-07-18 and 2014-08-04, the DISCA
share distribution and the EBAY spin-off.
"""

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data import clean_bars, load_bars, load_fundamentals, load_securities, make_synthetic_alt
from technic.errors import DataError
from technic.features import registry as R
from technic.features.batch import compute_features
from technic.features.parity import compare, incremental_features

FIX = Path(__file__).parent / "fixtures"
SEED_COUNTS = {"momentum": 15, "volatility": 12, "volume": 10, "price_pattern": 15, "microstructure": 8,
               "fundamental": 20, "alternative": 10, "cross_sectional": 10}


@pytest.fixture(scope="module")
def inputs():
    bars, _ = clean_bars(load_bars(FIX / "bars_400d.csv.gz"))
    fund = load_fundamentals(FIX / "fundamentals_400d.csv")
    secs = load_securities(FIX / "securities_400d.csv")
    alt = make_synthetic_alt(bars, seed=1)
    return bars, fund, secs, alt


@pytest.fixture(scope="module")
def batch(inputs):
    return compute_features(*inputs)


def test_registry_counts_and_declarations():
    counts = Counter(f.category for f in R.ALL_FEATURES)
    assert len(R.ALL_FEATURES) >= 100
    for cat, n in SEED_COUNTS.items():
        assert counts[cat] >= n, (cat, counts[cat])
    rows = R.describe()
    assert len({r["name"] for r in rows}) == len(rows)
    assert all(r["description"] and r["lookback"] >= 1 for r in rows)
    assert len(R.registry_hash()) == 64


def test_batch_shape_and_index(inputs, batch):
    bars = inputs[0]
    assert batch.shape == (len(bars), len(R.FEATURE_NAMES))
    assert list(batch.columns) == R.FEATURE_NAMES
    assert batch.index.names == ["date", "symbol"]
    assert not np.isinf(batch.to_numpy()).any()


def test_parity_batch_vs_incremental(inputs, batch):
    incr = incremental_features(*inputs)
    rep = compare(batch, incr)
    assert rep["n_values"] == batch.size
    assert rep["n_mismatch"] == 0, rep
    assert rep["max_rel_err"] <= 1e-9


def test_ret_and_momentum_against_pandas_oracle(inputs, batch):
    bars = inputs[0].sort_values(["symbol", "date"])
    close = bars.set_index(["date", "symbol"])["close"]
    g = close.groupby(level="symbol")
    ret1 = g.pct_change(fill_method=None)
    mom_12_1 = g.shift(21) / g.shift(252) - 1
    vol_20 = ret1.groupby(level="symbol").transform(lambda s: s.rolling(20).std())
    for name, oracle in (("ret_1", ret1), ("mom_12_1", mom_12_1), ("vol_20", vol_20)):
        got = batch[name].reindex(oracle.index)
        np.testing.assert_allclose(got.to_numpy(), oracle.to_numpy(), rtol=1e-12, equal_nan=True, err_msg=name)


def test_valuation_uses_point_in_time_fundamentals(inputs, batch):
    bars, fund, _, _ = inputs
    sym = "AAPL"
    f = fund[fund.symbol == sym].sort_values("available_from")
    sub = batch.xs(sym, level="symbol")["earnings_yield"]
    closes = bars[bars.symbol == sym].set_index("date")["close"]
    for d in sub.index[::37]:
        vis = f[f.available_from <= d]
        if vis.empty:
            assert np.isnan(sub[d])
            continue
        row = vis.iloc[-1]
        expect = row["net_income"] / (closes[d] * row["shares"])
        assert sub[d] == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("cut", ["2014-09-30", "2015-03-12", "2015-06-01"])
def test_truncation_leaves_past_values_unchanged(inputs, batch, cut):
    bars, fund, secs, alt = inputs
    t = pd.Timestamp(cut)
    trunc = compute_features(bars[bars.date <= t], fund, secs, alt[alt.date <= t])
    past = batch.loc[batch.index.get_level_values("date") <= t]
    np.testing.assert_array_equal(trunc.to_numpy(), past.to_numpy())


def test_features_live_and_disperse(batch):
    """No feature except alternative ones (synthetic here) is all-NaN or constant."""
    late = batch.loc[batch.index.get_level_values("date") >= "2015-02-01"]
    for name in R.FEATURE_NAMES:
        col = late[name]
        assert col.notna().any(), f"{name} is all NaN"
        assert col.nunique() > 1, f"{name} is constant"


def test_alternative_features_are_nan_without_alt_input(inputs):
    bars, fund, secs, _ = inputs
    frame = compute_features(bars, fund, secs, alt=None)
    alt_names = [f.name for f in R.ALL_FEATURES if f.category == "alternative"]
    assert frame[alt_names].isna().all().all()


def test_duplicate_bars_are_a_clear_error(inputs):
    bars = inputs[0]
    dup = pd.concat([bars, bars.iloc[[5]]])
    with pytest.raises(DataError, match="duplicate"):
        compute_features(dup)
