"""Alerts an operator can live with, on the shipped data (issue 13, item 4).

The demo's model (``train_quick_model`` on the first two years of 100 symbols) is replayed
through the ScoringPipeline with the drift layer (``OnlineLayer``, default configuration):

* over its own training period, from an empty state (so every feature warms up on the way);
* over a fresh 60-day window right after the training period plus the label purge (a stationary
  stretch, replayed from scratch like ``technic-stream parity`` does).

Neither may raise a critical alert or a ``retrain_requested``, and PSI is at most one alert per
window. The same check on two more training periods (2015-02..2017-02 with 100 symbols and
2013-11..2015-11 with 200 symbols, in-sample and the 250 days after) gave no critical alert either;
the numbers behind the defaults are in ``stream.online.layer`` and docs/operations.md.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from technic.errors import TechnicError

N_SYMBOLS, TRAIN_DAYS, PURGE = 100, 504, 11


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    from technic.commands.features import load_inputs
    from technic.models.scoring import load_scorer
    from technic.training import train_quick_model
    from technic.paths import data_dir, dev_files
    try:
        files = dev_files(data_dir())
    except TechnicError:
        pytest.skip("shipped dev data not found (set TECHNIC_DATA_DIR)")
    bars, fund, secs, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"), None,
                                      N_SYMBOLS)
    dates = np.sort(bars["date"].unique())
    cut = dates[TRAIN_DAYS - 1]
    reg = tmp_path_factory.mktemp("calibration") / "registry"
    train_quick_model(bars[bars["date"] <= cut], fund, secs, registry_root=reg, end=cut)
    return bars, fund, secs, dates, reg, load_scorer(reg)


def _replay(demo_model, start, end):
    from stream.online.evaluate import replay
    from stream.online.layer import OnlineConfig, OnlineLayer, registry_reference_loader
    bars, fund, secs, dates, reg, scorer = demo_model
    layer = OnlineLayer(OnlineConfig(), reference_loader=registry_reference_loader(reg))
    b = bars[(bars["date"] >= dates[start]) & (bars["date"] <= dates[end])]
    rows, alerts, _ = replay(b, fund, secs, scorer, layer, dates[start])
    return rows, alerts, layer


def _check(rows, alerts, layer, n_days):
    kinds = Counter((a["type"], a["severity"]) for a in alerts)
    print(f"\n{n_days} timestamps, {len(rows)} scores: {dict(kinds)}")
    assert rows
    critical = [(a["ts"], a["type"], a["message"]) for a in alerts if a["severity"] == "critical"]
    assert not critical, critical
    assert not any(a["type"] == "retrain_requested" for a in alerts)
    psi = [a for a in alerts if a["type"] == "psi"]
    assert len(psi) <= n_days // layer.cfg.psi_window          # one aggregated alert per window at most
    assert len({a["ts"] for a in psi}) == len(psi)


def test_replaying_the_training_period_raises_no_critical_alert(demo_model):
    rows, alerts, layer = _replay(demo_model, 0, TRAIN_DAYS - 1)
    _check(rows, alerts, layer, TRAIN_DAYS)


def test_a_fresh_stationary_window_raises_no_critical_alert(demo_model):
    start = TRAIN_DAYS + PURGE
    rows, alerts, layer = _replay(demo_model, start, start + 59)
    _check(rows, alerts, layer, 60)
