"""Each drift detector against River's own detector or a direct batch computation; state round trips."""

import json

import numpy as np
import pandas as pd
import pytest
from river import drift
from scipy.stats import spearmanr

from stream.online.drift import (AdwinDetector, DeadLetterRate, PageHinkleyDetector, PSIMonitor, RollingIC,
                                  psi, reference_bins, spearman)
from technic.training import reference_distributions


def _stream(seed=0, n=3000, shift_at=1500, shift=0.8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[shift_at:] += shift
    return x


def test_adwin_equals_river_at_every_step_and_round_trips():
    x = _stream()
    ours, ref = AdwinDetector(delta=0.002), drift.ADWIN(delta=0.002)
    hits = []
    for i, v in enumerate(x):
        hit, _, after = ours.update(v)
        ref.update(v)
        assert hit == ref.drift_detected and ours.det.width == ref.width and after == ref.estimation
        hits.append(hit)
        if i == 1700:  # restore mid-stream from JSON and keep going with the copy
            ours = AdwinDetector.from_dict(json.loads(json.dumps(ours.to_dict())))
    first = np.flatnonzero(hits)
    assert len(first) and 1500 <= first[0] <= 1500 + 1000  # detected within a bounded delay


def test_page_hinkley_equals_river_at_every_step_and_round_trips():
    x = _stream(seed=1, shift=1.0)
    ours = PageHinkleyDetector(delta=0.1, threshold=50.0, mode="up")
    ref = drift.PageHinkley(delta=0.1, threshold=50.0, mode="up", min_instances=30, alpha=1 - 1e-4)
    hits = []
    for i, v in enumerate(x):
        hit = ours.update(v)
        ref.update(v)
        assert hit == ref.drift_detected
        hits.append(hit)
        if i in (100, 1503):
            ours = PageHinkleyDetector.from_dict(json.loads(json.dumps(ours.to_dict())))
    first = np.flatnonzero(hits)
    assert len(first) and first[0] >= 1500 and first[0] <= 1500 + 100


def _psi_oracle(train, window, eps=1e-4, include_missing=True):
    """Direct formula for continuous data: deciles of train, 10 bins of 10% expected (+ NaN bin)."""
    tr = train[np.isfinite(train)]
    q = np.quantile(tr, np.linspace(0, 1, 11))
    miss = 1 - np.isfinite(train).mean()
    exp = [0.1 * (1 - miss)] * 10 + [miss]
    n = len(window)
    act = []
    for b in range(10):
        lo = -np.inf if b == 0 else q[b]
        hi = np.inf if b == 9 else q[b + 1]
        act.append(np.sum((window > lo) & (window <= hi)) / n)
    act.append(np.sum(~np.isfinite(window)) / n)
    if not include_missing:
        act = [a / sum(act[:10]) for a in act[:10]]
        exp = [0.1] * 10
    return sum((max(a, eps) - max(e, eps)) * np.log(max(a, eps) / max(e, eps)) for a, e in zip(act, exp))


def test_psi_monitor_equals_direct_formula():
    rng = np.random.default_rng(4)
    train = rng.normal(size=5000)
    train[::50] = np.nan
    ref = reference_distributions(pd.DataFrame({"f": train, "g": train * 2}), ["f", "g"])
    mon = PSIMonitor(json.loads(json.dumps(ref)), ["f", "g"], window=20, include_missing=True)
    fin = PSIMonitor(json.loads(json.dumps(ref)), ["f", "g"], window=20)
    windows = []
    for w in range(3):
        vals = []
        for t in range(20):
            x = rng.normal(loc=0.3 * w, scale=1 + 0.2 * w, size=50)
            x[rng.random(50) < 0.05 * w] = np.nan
            vals.append(x)
            res = mon.update(np.column_stack([x, 2 * x]))
            res_fin = fin.update(np.column_stack([x, 2 * x]))
            if t == 9 and w == 1:  # mid-window round trip
                mon = PSIMonitor.from_dict(json.loads(json.dumps(mon.to_dict())))
            assert (res is None) == (t < 19)
        windows.append((np.concatenate(vals), res, res_fin))
    for win, res, res_fin in windows:
        assert res["f"] == pytest.approx(_psi_oracle(train, win), rel=1e-9, abs=1e-12)
        assert res_fin["f"] == pytest.approx(_psi_oracle(train, win, include_missing=False), rel=1e-9, abs=1e-12)
        assert res["g"] == pytest.approx(res["f"], rel=1e-9)
    assert windows[0][2]["f"] < 0.05 and windows[2][2]["f"] > 0.25
    assert windows[0][1]["f"] > 0.1  # 2 % expected missing, none seen: the NaN bin alone adds ~0.1


def test_psi_tied_deciles_expected_shares():
    rng = np.random.default_rng(5)
    train = np.where(rng.random(4000) < 0.45, 0.0, rng.exponential(size=4000))  # 45% mass at 0
    ref = reference_distributions(pd.DataFrame({"f": train}), ["f"])["f"]
    edges, shares = reference_bins(ref)
    assert shares.sum() == pytest.approx(1.0)
    assert shares[0] == pytest.approx(0.45)  # deciles 0..0.4 are all 0: a point mass between 40 and 50 %
    # the training sample itself is stable against its own deciles
    counts = np.bincount(np.searchsorted(edges, train, side="left"), minlength=len(edges) + 2)
    assert psi(counts, shares) < 0.02


def test_rolling_ic_and_spearman_vs_batch():
    rng = np.random.default_rng(6)
    ics = rng.normal(0.02, 0.1, size=200)
    r = RollingIC(20)
    got = [r.update(v) for v in ics]
    want = pd.Series(ics).rolling(20).mean()
    for g, w in zip(got, want):
        assert (g is None and np.isnan(w)) or g == pytest.approx(w, abs=1e-12)
    r2 = RollingIC.from_dict(json.loads(json.dumps(r.to_dict())))
    assert r2.update(0.5) == r.update(0.5)
    a, b = rng.normal(size=80), rng.normal(size=80)
    a[3], b[7] = np.nan, np.nan
    b[10:20] = 1.0  # ties
    ok = np.isfinite(a) & np.isfinite(b)
    assert spearman(a, b) == pytest.approx(spearmanr(a[ok], b[ok]).statistic, abs=1e-12)


def test_deadletter_rate():
    d = DeadLetterRate(window=3)
    assert d.update(100, 0) == (0.0, 0)
    assert d.update(200, 10) == (0.1, 100)
    d.update(300, 10)
    d.update(400, 10)
    assert d.update(500, 10) == (0.0, 300)   # the 10 dead letters left the 3-timestamp window
    d2 = DeadLetterRate.from_dict(json.loads(json.dumps(d.to_dict())))
    assert d2.update(600, 40) == d.update(600, 40)
