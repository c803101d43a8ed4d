"""One symbol per call: the per-symbol stage's path of the incremental engine.

The scale-out design updates each symbol's state as its bar arrives (one
``update_ts`` call per bar, partitions running ahead of each other) and runs
the market and cross-sectional stages once per timestamp over the universe.
That path must give

(a) the batch evaluator's values (the parity contract: ``parity.compare``,
    1e-9 relative, feature-scale aware), with fundamentals, sectors and alt
    data;
(b) BITWISE the values and states of one call per timestamp with all its
    symbols, whatever the order in which symbols' bars arrive: here every
    symbol's whole history is fed before the next symbol's (the most
    different order possible), and the cross sections are closed afterwards
    in timestamp order;

and the state it leaves must be exactly serializable in a versioned layout.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import orjson
import pytest

from technic.data import clean_bars, load_bars, load_fundamentals, load_securities, make_synthetic_alt
from technic.data.securities import sector_map
from technic.features import registry as R
from technic.features.batch import _check_bars, compute_features
from technic.features.incremental import FeatureEngine
from technic.features.panel import date_slices
from technic.features.parity import compare, feed_side_inputs, incremental_features

FIX = Path(__file__).parent / "fixtures"


def _fixture(name: str):
    if name == "bars_400d":
        bars, _ = clean_bars(load_bars(FIX / "bars_400d.csv.gz"))
        return (bars, load_fundamentals(FIX / "fundamentals_400d.csv"), load_securities(FIX / "securities_400d.csv"),
                make_synthetic_alt(bars, seed=1))
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz"))
    return bars, None, load_securities(FIX / "securities_40.csv"), make_synthetic_alt(bars, seed=2)


@pytest.fixture(scope="module", params=["bars_400d", "bars_40x2y"])
def inputs(request):
    return _fixture(request.param)


def test_parity_one_symbol_per_call_vs_batch():
    inputs = _fixture("bars_400d")
    batch = compute_features(*inputs)
    incr = incremental_features(*inputs, one_symbol_per_call=True)
    rep = compare(batch, incr)
    assert rep["n_values"] == batch.size and rep["n_non_nan"] > batch.size // 2
    assert rep["n_mismatch"] == 0, rep
    assert rep["max_rel_err"] <= 1e-9


def _per_timestamp(bars, fund, secs, alt):
    """One process_timestamp call per timestamp, all its symbols at once."""
    b = _check_bars(bars)
    eng = FeatureEngine(sectors=sector_map(secs), capacity=8)
    feed_side_inputs(eng, fund, alt)
    dates, syms = b["date"].to_numpy(), b["symbol"].to_numpy(dtype=object)
    cols = {f: b[f].to_numpy(np.float64) for f in R.BAR_FIELDS}
    out = np.empty((len(b), len(R.FEATURE_NAMES)))
    for a, z in date_slices(dates):
        names, out[a:z] = eng.process_timestamp(dates[a], list(syms[a:z]), {f: v[a:z] for f, v in cols.items()})
        assert names == list(syms[a:z])
    return eng, out


def _symbol_major(bars, fund, secs, alt):
    """One update_ts call per bar, each symbol's whole history before the next symbol's
    (in reverse name order); then the cross sections, timestamp by timestamp."""
    b = _check_bars(bars)
    eng = FeatureEngine(sectors=sector_map(secs), capacity=8)
    feed_side_inputs(eng, fund, alt)
    dates, syms = b["date"].to_numpy(), b["symbol"].to_numpy(dtype=object)
    cols = {f: b[f].to_numpy(np.float64) for f in R.BAR_FIELDS}
    ts = np.empty((len(b), len(eng.ts_names)))
    for sym in sorted(set(syms), reverse=True):
        for i in np.flatnonzero(syms == sym):
            ts[i] = eng.update_ts(dates[i], [sym], {f: v[i:i + 1] for f, v in cols.items()})[0]
    out = np.empty((len(b), len(R.FEATURE_NAMES)))
    for a, z in date_slices(dates):
        out[a:z] = eng.cross_section(list(syms[a:z]), ts[a:z])
    return eng, out


def test_one_symbol_per_call_is_bitwise_equal_to_one_call_per_timestamp(inputs):
    vec_eng, vec = _per_timestamp(*inputs)
    one_eng, one = _symbol_major(*inputs)
    assert vec.shape == one.shape == (len(inputs[0]), len(R.FEATURE_NAMES))
    differ = [name for j, name in enumerate(R.FEATURE_NAMES) if not np.array_equal(vec[:, j], one[:, j], equal_nan=True)]
    assert not differ, f"features not bitwise equal: {differ}"
    assert np.isfinite(one).sum() > one.size // 2  # not vacuous
    # and the states are the same bytes (slots differ: they are not part of a symbol's state)
    for sym in vec_eng.slots:
        assert one_eng.get_state(sym) == vec_eng.get_state(sym), sym


def test_per_symbol_state_restores_into_a_vectorized_engine():
    """A symbol's state checkpointed by the per-symbol path continues bit for bit in a new engine."""
    bars, fund, secs, alt = _fixture("bars_400d")
    dates = np.sort(bars["date"].unique())
    first, rest = bars[bars["date"] < dates[250]], bars[bars["date"] >= dates[250]]
    one_eng, _ = _symbol_major(first, fund, secs, alt)
    vec_eng, _ = _per_timestamp(first, fund, secs, alt)
    restored = FeatureEngine(sectors=sector_map(secs), capacity=2)
    for sym in sorted(one_eng.slots, reverse=True):
        restored.set_state(sym, one_eng.get_state(sym))
    b = _check_bars(rest)
    cols = {f: b[f].to_numpy(np.float64) for f in R.BAR_FIELDS}
    syms = b["symbol"].to_numpy(dtype=object)
    for a, z in date_slices(b["date"].to_numpy()):
        args = (b["date"].iloc[a], list(syms[a:z]), {f: v[a:z] for f, v in cols.items()})
        np.testing.assert_array_equal(restored.process_timestamp(*args)[1], vec_eng.process_timestamp(*args)[1])


def test_state_layout_is_versioned():
    bars, fund, secs, alt = _fixture("bars_400d")
    eng, _ = _per_timestamp(bars.iloc[:400], fund, secs, alt)
    blob = eng.get_state("AOS")
    (hlen,) = struct.unpack_from("<I", blob)
    header = orjson.loads(blob[4:4 + hlen])
    assert header["format"] == 2 and len(header["layout"]) == 32
    # the payload is exactly the slot's rows: time-series + market state, then the side inputs
    rows = eng.ts.table.row_nbytes + eng.mkt.table.row_nbytes
    assert len(blob) - 4 - hlen == rows + sum(a[0].nbytes for a in eng._side_arrays())
    for key, value in (("layout", "0" * 32), ("format", 1)):
        other = orjson.dumps({**header, key: value})
        with pytest.raises(ValueError, match="format"):
            FeatureEngine(sectors=sector_map(secs)).set_state("AOS", struct.pack("<I", len(other)) + other
                                                               + blob[4 + hlen:])
    with pytest.raises(ValueError, match="corrupt"):
        FeatureEngine(sectors=sector_map(secs)).set_state("AOS", blob[:-8])
