"""FeatureEngine state: exact round trip, order rules, point-in-time side inputs, size.

(a) ``get_state``/``set_state`` round trip is exact: a new engine restored
    mid-stream continues bit for bit like the original;
(b) out-of-order and duplicate bars raise ``OrderError`` and leave every byte
    of state unchanged;
(c) fundamentals queued before any bar apply only from their
    ``available_from`` (as ``technic.data.pit.asof_fundamentals``);
(d) the serialized state of a symbol is small (< 200 KB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data.bars import load_bars
from technic.data.fundamentals import load_fundamentals
from technic.data.pit import asof_fundamentals
from technic.data.securities import load_securities, sector_map
from technic.errors import OrderError
from technic.features import registry as R
from technic.features.incremental import FeatureEngine
from technic.features.parity import feed_side_inputs

FIX = Path(__file__).parent / "fixtures"
SYMBOLS = ["AAPL", "LNT", "WRK", "XOM", "ZTS"]
LAG_DAYS = 140  # puts the FY2015 rows (period end 2015-12-31) inside the fixture's window


@pytest.fixture(scope="module")
def sectors():
    return sector_map(load_securities(FIX / "securities_small.csv"))


@pytest.fixture(scope="module")
def fixture_bars():
    b = load_bars(FIX / "bars_small.csv", symbols=SYMBOLS)
    return b.sort_values(["date", "symbol"], kind="mergesort").reset_index(drop=True)


@pytest.fixture(scope="module")
def fundamentals():
    return load_fundamentals(FIX / "fundamentals_small.csv", lag_days=LAG_DAYS)


def synthetic_bars(n_dates: int = 300, symbols=SYMBOLS, seed: int = 3) -> pd.DataFrame:
    """300 bars of 5 symbols: enough for every ring buffer (lookback <= 260) to wrap."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-02", periods=n_dates)
    rows = []
    for k, sym in enumerate(symbols):
        c = 50.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 0.015, n_dates)))
        o = c * np.exp(rng.normal(0, 0.004, n_dates))
        h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.006, n_dates)))
        lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.006, n_dates)))
        v = np.round(1e6 * (k + 1) * np.exp(rng.normal(0, 0.4, n_dates)))
        if n_dates > 107:
            c[100:107] = c[99]  # a constant stretch
        rows.append(pd.DataFrame({"date": dates, "symbol": sym, "open": o, "high": h, "low": lo,
                                  "close": c, "volume": v}))
    b = pd.concat(rows)
    b = b.reset_index(drop=True)
    if n_dates > 120:
        b = b[~((b["symbol"] == "WRK") & (b["date"] == dates[120]))]  # a missing bar
    return b.sort_values(["date", "symbol"], kind="mergesort").reset_index(drop=True)


def _timestamps(bars: pd.DataFrame):
    for d, g in bars.groupby("date", sort=True):
        yield d, list(g["symbol"]), {f: g[f].to_numpy(np.float64) for f in R.BAR_FIELDS}


def _run(engine: FeatureEngine, bars: pd.DataFrame) -> np.ndarray:
    out = []
    for d, syms, cols in _timestamps(bars):
        names, mat = engine.process_timestamp(d, syms, cols)
        assert names == syms
        out.append(mat)
    return np.vstack(out) if out else np.empty((0, len(R.FEATURE_NAMES)))


def _states(engine: FeatureEngine) -> dict[str, bytes]:
    return {s: engine.get_state(s) for s in engine.slots}


# ---------------------------------------------------------------------------
# (a) exact round trip
# ---------------------------------------------------------------------------
def _round_trip(bars, sectors, split_date, fundamentals=None):
    first, rest = bars[bars["date"] < split_date], bars[bars["date"] >= split_date]
    eng = FeatureEngine(sectors=sectors)
    feed_side_inputs(eng, fundamentals)
    _run(eng, first)
    # restore into a NEW engine, in another slot order (slots are not part of a symbol's state)
    new = FeatureEngine(sectors=sectors, capacity=2)
    for sym in reversed(list(eng.slots)):
        new.set_state(sym, eng.get_state(sym))
    assert _states(new) == _states(eng)
    a, b = _run(eng, rest), _run(new, rest)
    assert a.shape == (len(rest), len(R.FEATURE_NAMES))
    mism = [R.FEATURE_NAMES[j] for j in range(a.shape[1]) if not np.array_equal(a[:, j], b[:, j], equal_nan=True)]
    assert not mism, f"features differ after the round trip: {mism}"
    assert _states(new) == _states(eng)
    return a


def test_round_trip_synthetic_300_bars(sectors):
    bars = synthetic_bars()
    dates = np.sort(bars["date"].unique())
    a = _round_trip(bars, sectors, dates[150])
    # the continuation is not vacuous: late values exist for long-lookback features
    j = R.FEATURE_NAMES.index("mom_126")
    assert (~np.isnan(a[:, j])).sum() > 100


def test_round_trip_fixture_with_pending_fundamentals(fixture_bars, sectors, fundamentals):
    bars = fixture_bars
    assert len(bars) >= 300
    bars = bars.iloc[:300]
    split = bars["date"].iloc[150]
    # FY2015 rows become available after the split: they travel as pending rows in the state
    pending = fundamentals[(fundamentals["symbol"].isin(SYMBOLS)) & (fundamentals["available_from"] > split)
                           & (fundamentals["available_from"] <= bars["date"].max())]
    assert len(pending) >= 2
    _round_trip(bars, sectors, split, fundamentals)


def test_states_later_equals_get_state_and_ignores_later_updates(fixture_bars, sectors, fundamentals):
    """The snapshot capture: rows copied now, bytes formatted later, equal to get_state at capture time
    (pending fundamentals included) whatever the engine does in between."""
    bars = fixture_bars.iloc[:300]
    split = bars["date"].iloc[150]
    eng = FeatureEngine(sectors=sectors)
    feed_side_inputs(eng, fundamentals)
    _run(eng, bars[bars["date"] < split])
    syms = list(eng.slots)[::-1]
    want = {s: eng.get_state(s) for s in syms}
    build = eng.states_later(syms)
    _run(eng, bars[bars["date"] >= split])          # the engine moves on before the bytes are built
    got = build()
    assert list(got) == syms and got == want
    assert any(eng.get_state(s) != want[s] for s in syms)


def test_set_state_rejects_other_registry_and_corruption(sectors):
    eng = FeatureEngine(sectors=sectors)
    _run(eng, synthetic_bars(30))
    blob = eng.get_state("XOM")
    with pytest.raises(ValueError, match="trailing bytes"):
        FeatureEngine(sectors=sectors).set_state("XOM", blob + b"\0" * 8)
    hacked = blob.replace(eng.ts.program.hash.encode(), b"0" * 16, 1)
    with pytest.raises(ValueError, match="another feature registry"):
        FeatureEngine(sectors=sectors).set_state("XOM", hacked)


# ---------------------------------------------------------------------------
# (b) order rules
# ---------------------------------------------------------------------------
def test_out_of_order_and_duplicates_leave_state_unchanged(sectors):
    bars = synthetic_bars(40)
    eng = FeatureEngine(sectors=sectors)
    _run(eng, bars)
    last = bars["date"].max()
    g = bars[bars["date"] == last]
    cols = {f: g[f].to_numpy(np.float64) for f in R.BAR_FIELDS}
    syms = list(g["symbol"])
    before, slots = _states(eng), dict(eng.slots)

    def attempt(ts, symbols, columns, match):
        with pytest.raises(OrderError, match=match):
            eng.process_timestamp(ts, symbols, columns)
        assert _states(eng) == before
        assert eng.slots == slots

    attempt(last, syms, cols, "duplicate")  # the same timestamp again
    attempt(last - pd.Timedelta(days=3), syms, cols, "out_of_order")  # an older one
    # one bad symbol in an otherwise valid later batch: nothing at all is applied
    later = last + pd.Timedelta(days=1)
    mixed = {f: np.concatenate([v, v[:1]]) for f, v in cols.items()}
    attempt(later, syms + [syms[0]], mixed, "duplicate")  # a symbol twice in one batch
    with pytest.raises(OrderError):
        eng.update_ts(last, ["NEWSYM", syms[1]], {f: v[:2] for f, v in cols.items()})
    assert _states(eng) == before and "NEWSYM" not in eng.slots
    # and the engine still accepts the valid next bar afterwards
    names, mat = eng.process_timestamp(later, syms, cols)
    assert names == syms and mat.shape == (len(syms), len(R.FEATURE_NAMES))
    assert _states(eng) != before


def test_check_order_reports_reasons(sectors):
    eng = FeatureEngine(sectors=sectors)
    _run(eng, synthetic_bars(5))
    t = eng.last_ts[eng.slots["AAPL"]]
    ts = np.datetime64(int(t), "ns")
    assert eng.check_order(ts, ["AAPL", "NEW"]) == {"AAPL": "duplicate"}
    assert eng.check_order(ts - np.timedelta64(1, "D"), ["XOM"]) == {"XOM": "out_of_order"}
    assert eng.check_order(ts + np.timedelta64(1, "D"), ["XOM", "XOM"]) == {"XOM": "duplicate"}
    assert eng.check_order(ts + np.timedelta64(1, "D"), ["XOM", "AAPL"]) == {}


# ---------------------------------------------------------------------------
# (c) fundamentals apply from available_from only
# ---------------------------------------------------------------------------
def test_fundamentals_queued_early_apply_from_available_from(fixture_bars, sectors, fundamentals):
    bars = fixture_bars
    eng = FeatureEngine(sectors=sectors)
    feed_side_inputs(eng, fundamentals)  # everything queued before the first bar
    fields = list(R.FUNDAMENTAL_INPUTS)
    seen = np.empty((len(bars), len(fields)))
    feats = []
    i = 0
    for d, syms, cols in _timestamps(bars):
        _, mat = eng.process_timestamp(d, syms, cols)
        feats.append(mat)
        for s in syms:
            seen[i] = eng.fund[eng.slots[s]]
            i += 1
    want = asof_fundamentals(bars, fundamentals, fields=fields).to_numpy(np.float64)
    np.testing.assert_array_equal(seen, want)
    # the switch really happens inside the window for some symbols (the test is not vacuous)
    ni = fields.index("net_income")
    switched = [s for s in SYMBOLS if len(np.unique(want[(bars["symbol"] == s).to_numpy(), ni])) > 1]
    assert len(switched) >= 3, switched
    # and no bar ever sees a row before its available_from
    for s in switched:
        m = (bars["symbol"] == s).to_numpy()
        row = fundamentals[(fundamentals["symbol"] == s)].sort_values("available_from").iloc[-1]
        if row["available_from"] <= bars["date"].max():
            early = m & (bars["date"] < row["available_from"]).to_numpy()
            late = m & (bars["date"] >= row["available_from"]).to_numpy()
            assert (seen[early, ni] != row["net_income"]).all()
            assert (seen[late, ni] == row["net_income"]).all()
    # a feature built on them follows the same step: roe = net_income / total_equity
    roe = np.vstack(feats)[:, R.FEATURE_NAMES.index("roe")]
    with np.errstate(all="ignore"):
        want_roe = want[:, ni] / want[:, fields.index("total_equity")]
    np.testing.assert_allclose(roe, want_roe, rtol=1e-15)


# ---------------------------------------------------------------------------
# (d) state size
# ---------------------------------------------------------------------------
def test_state_size_per_symbol(sectors):
    eng = FeatureEngine(sectors=sectors)
    _run(eng, synthetic_bars(40))
    sizes = {s: eng.state_nbytes(s) for s in eng.slots}
    print(f"\nFeatureEngine state bytes per symbol: {sizes}")
    # fixed layout: the size does not depend on history (only the header's symbol name varies)
    assert max(sizes.values()) - min(sizes.values()) <= 8
    assert max(sizes.values()) < 200_000
    fresh = FeatureEngine(sectors=sectors)
    fresh.slot("AAPL")
    assert fresh.state_nbytes("AAPL") == sizes["AAPL"]
