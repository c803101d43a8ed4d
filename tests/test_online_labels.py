"""DelayedLabelBuffer vs the batch labels (technic.labels), bounded memory, exact JSON round trip."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data import clean_bars, load_bars
from technic.labels import make_labels
from stream.online.labels import DelayedLabelBuffer

FIX = Path(__file__).resolve().parent / "fixtures"


def _stream(bars, buf, payload_fn=None):
    got = {}
    for d, g in bars.groupby("date", sort=True):
        g = g.sort_values("symbol")
        syms = g["symbol"].tolist()
        t = int(pd.Timestamp(d).value)
        pay = payload_fn(t, g) if payload_fn else None
        for h, m in buf.push(t, syms, g["close"].to_numpy(), pay).items():
            for i, s in enumerate(m.symbols):
                got[(h, pd.Timestamp(int(m.origin_ts[i])), s)] = (m.fwd_ret[i], m.excess[i], m.payload[i])
    return got


def test_matches_batch_labels_with_gaps():
    bars, _ = clean_bars(load_bars(FIX / "bars_small.csv"))
    # a gap: one symbol misses three dates (h-th next bar of its OWN sequence, as in technic.labels)
    sym = sorted(bars["symbol"].unique())[1]
    dates = sorted(bars["date"].unique())
    bars = bars[~((bars["symbol"] == sym) & bars["date"].isin(dates[20:23]))]
    lab = make_labels(bars, (5, 10))
    buf = DelayedLabelBuffer((5, 10), width=1)
    got = _stream(bars, buf, lambda t, g: np.full((len(g), 1), t, dtype=np.float64))
    n = 0
    for h in (5, 10):
        col = lab[f"fwd_ret_{h}"].dropna()
        for (d, s), v in col.items():
            r, e, p = got[(h, pd.Timestamp(d), s)]
            assert r == pytest.approx(v, rel=1e-12, abs=1e-15)
            assert p[0] == pd.Timestamp(d).value  # the payload stored at t comes back with its label
            n += 1
        # excess equals the batch excess where all symbols of that date matured together
        exc = lab[f"excess_{h}"].dropna()
        for (d, s), v in exc.items():
            if d in dates[8:25]:
                continue  # around the gap the symbol matures in a later batch (documented)
            assert got[(h, pd.Timestamp(d), s)][1] == pytest.approx(v, rel=1e-9, abs=1e-12)
    assert n == sum(lab[f"fwd_ret_{h}"].notna().sum() for h in (5, 10))
    assert len(got) == n  # nothing emitted that the batch labels do not have


def test_bounded_memory_and_exact_round_trip():
    rng = np.random.default_rng(3)
    buf = DelayedLabelBuffer((2, 4), width=3)
    syms = [f"S{i}" for i in range(7)]
    for t in range(1, 40):
        pay = rng.normal(size=(7, 3))
        pay[0, 1] = np.nan
        closes = 100 + rng.normal(size=7)
        closes[3] = np.nan if t == 5 else closes[3]
        buf.push(t, syms, closes, pay)
        assert len(buf) <= 7 * (4 + 1 + 1)          # max horizon + lag + 1 entries per symbol
    d = buf.to_dict()
    back = DelayedLabelBuffer.from_dict(json.loads(json.dumps(d)))
    assert json.dumps(back.to_dict()) == json.dumps(d)
    pay, closes = rng.normal(size=(7, 3)), 100 + rng.normal(size=7)
    a, b = buf.push(40, syms, closes, pay), back.push(40, syms, closes, pay)
    for h in a:
        np.testing.assert_array_equal(a[h].fwd_ret, b[h].fwd_ret)
        np.testing.assert_array_equal(a[h].excess, b[h].excess)
        np.testing.assert_array_equal(a[h].payload, b[h].payload)


def test_rejects_bad_input():
    buf = DelayedLabelBuffer((5,), width=2)
    with pytest.raises(ValueError, match="payload"):
        buf.push(1, ["A"], [1.0], np.zeros((1, 3)))
    buf.push(2, ["A"], [1.0], np.zeros((1, 2)))
    with pytest.raises(ValueError, match="not after"):
        buf.push(2, ["A"], [1.0], np.zeros((1, 2)))
