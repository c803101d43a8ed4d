"""OnlineLayer: injected drift raises the expected alerts within bounded delays, a stationary replay
stays under the false-alarm budget, state survives a restart exactly, alerts match the schema, and
the layer runs inside ScoringPipeline (score_online on the score records)."""

import json
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from stream.io.codecs import validate
from technic.features import registry as R
from stream.online import OnlineConfig, OnlineLayer
from technic.training import reference_distributions

FEATS = ["mom_21", "vol_20"]
K = 60
FALSE_ALARM_RATE = 0.01  # alerts per timestamp allowed on a stationary stream
DEC = np.linspace(0, 1, 11).tolist()


class Scorer:
    version = "syn-v1"
    feature_names = FEATS
    horizons = [5, 10]

    def score(self, X):
        return {5: X[:, 0].copy(), 10: X[:, 0].copy()}


def _reference():
    rng = np.random.default_rng(99)
    import pandas as pd
    return reference_distributions(pd.DataFrame({f: rng.normal(size=20000) for f in FEATS}), FEATS)


class Synthetic:
    """k symbols; features N(0,1); the return of the bar after next (the first one a score published at
    the close can trade: execution lag 1) = sign * 1% * mom_21 + 1% noise."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.close = np.full(K, 100.0)
        self.syms = [f"S{i:03d}" for i in range(K)]
        self.prev = self.prev2 = None
        self.t = 0

    def step(self, sign=1.0, shift=0.0):
        x = self.rng.normal(size=(K, len(FEATS)))
        x[:, 1] += shift
        if self.prev2 is not None:
            r = sign * 0.01 * self.prev2[:, 0] + 0.01 * self.rng.normal(size=K)
            self.close = self.close * (1 + r)
        self.prev2, self.prev = self.prev, x
        self.t += 1
        full = np.full((K, len(R.FEATURE_NAMES)), np.nan)
        for j, f in enumerate(FEATS):
            full[:, R.FEATURE_NAMES.index(f)] = x[:, j]
        ts = (16_000 + self.t) * 86_400_000_000_000
        return ts, self.syms, full, self.close.copy(), {5: x[:, 0].copy(), 10: x[:, 0].copy()}


def run(layer, gen, n, **kw):
    alerts, online = [], []
    for _ in range(n):
        ts, syms, full, close, scores = gen.step(**kw)
        res = layer.on_scored(ts, syms, full, close, scores, Scorer())
        alerts.append(res.alerts)
        online.append(res.online_scores)
    return alerts, online


def _first(alerts, type_, feature=None):
    for i, a in enumerate(alerts):
        if any(x["type"] == type_ and (feature is None or x.get("feature") == feature) for x in a):
            return i
    return None


def _cfg(**kw):
    return OnlineConfig(warmup=500, online_learning=True, **kw)


def test_stationary_stream_stays_under_false_alarm_budget():
    layer = OnlineLayer(_cfg(), reference=_reference())
    alerts, online = run(layer, Synthetic(1), 300)
    flat = [a for step in alerts for a in step]
    assert len(flat) <= FALSE_ALARM_RATE * 300, [(a["type"], a["message"]) for a in flat]
    assert online[-1] is not None and np.isfinite(online[-1][5]).all()
    # the online learner found the planted relation (positive weight on the score)
    assert layer.learners[5].weights()["score"] > 0.05


def test_inverted_label_relation_raises_error_and_ic_alerts():
    layer = OnlineLayer(_cfg(), reference=_reference())
    gen = Synthetic(2)
    run(layer, gen, 200)
    alerts, _ = run(layer, gen, 150, sign=-1.0)
    flat = [a for step in alerts for a in step]
    for a in flat:
        validate("alerts", orjson.loads(orjson.dumps(a)))
    # labels need 5 bars to mature; each detector must fire within a bounded delay after that
    ph, ic = _first(alerts, "drift_page_hinkley"), _first(alerts, "ic_decay")
    adw = _first(alerts, "drift_adwin")
    assert ph is not None and ph <= 5 + 20
    assert adw is not None and adw <= 5 + 30
    assert ic is not None and ic <= 5 + 20
    assert _first(alerts, "retrain_requested") is not None
    assert _first(alerts, "psi") is None  # the features did not move


def test_feature_shift_raises_psi_alert_for_that_feature_only():
    layer = OnlineLayer(_cfg(), reference=_reference())
    gen = Synthetic(3)
    run(layer, gen, 100)                     # past the detector warm-up
    alerts, _ = run(layer, gen, 60, shift=2.0)
    hit = _first(alerts, "psi", "vol_20")    # one alert per window; ``feature`` = the worst one
    assert hit is not None and hit < 2 * layer.cfg.psi_window
    psi = next(x for a in alerts for x in a if x["type"] == "psi")
    assert "mom_21" not in psi["message"] and "1 of 2 features" in psi["message"]
    assert psi["value"] > layer.cfg.psi_threshold and psi["severity"] == "warning"
    assert _first(alerts, "retrain_requested") is None


def test_a_broken_feature_is_critical():
    layer = OnlineLayer(_cfg(), reference=_reference())
    gen = Synthetic(6)
    run(layer, gen, 100)
    alerts, _ = run(layer, gen, 40, shift=50.0)   # e.g. a unit change: every value beyond the training range
    psi = next(x for a in alerts for x in a if x["type"] == "psi")
    assert psi["severity"] == "critical" and psi["value"] > layer.cfg.psi_severe
    assert _first(alerts, "retrain_requested") is not None


def test_detectors_start_after_the_warm_up():
    layer = OnlineLayer(_cfg(psi_window=5), reference=_reference())
    alerts, _ = run(layer, Synthetic(7), 100, shift=2.5)   # drifted from the very first timestamp
    first = _first(alerts, "psi")
    assert first is not None and first >= layer.cfg.detector_warmup


def test_a_weaker_but_still_skilled_model_is_a_warning_not_a_retrain():
    layer = OnlineLayer(_cfg(), reference=_reference())
    gen = Synthetic(8)
    run(layer, gen, 200)
    alerts, _ = run(layer, gen, 200, sign=0.4)              # the relation weakens, stays positive
    flat = [x for a in alerts for x in a]
    assert not [x for x in flat if x["severity"] == "critical"], [(x["type"], x["message"]) for x in flat]


def test_cooldown_limits_a_persisting_condition():
    layer = OnlineLayer(_cfg(cooldown=20, psi_window=1, detector_warmup=0), reference=_reference())
    alerts, _ = run(layer, Synthetic(4), 60, shift=2.5)
    n = sum(1 for a in alerts for x in a if x["type"] == "psi" and x["feature"] == "vol_20")
    assert n == 3  # at steps 1, 21, 41 despite 60 alerting windows
    assert layer.gate.suppressed > 0


def test_state_round_trip_restart_is_exact():
    cfg = _cfg()
    a = OnlineLayer(cfg, reference=_reference())
    gen = Synthetic(5)
    run(a, gen, 130)
    state = a.state_bytes()
    b = OnlineLayer(OnlineConfig(**{**cfg.to_dict(), "horizons": tuple(cfg.horizons)}),
                    reference=_reference()).load_state(state)
    assert json.loads(b.state_bytes()) == json.loads(state)
    for i in range(60):
        ts, syms, full, close, scores = gen.step(sign=-1.0 if i > 20 else 1.0, shift=1.0 if i > 30 else 0.0)
        ra = a.on_scored(ts, syms, full, close, scores, Scorer())
        rb = b.on_scored(ts, syms, full, close, scores, Scorer())
        for h in ra.online_scores:
            np.testing.assert_array_equal(ra.online_scores[h], rb.online_scores[h])
        strip = lambda al: [{k: v for k, v in x.items() if k != "emit_time"} for x in al]  # noqa: E731
        assert strip(ra.alerts) == strip(rb.alerts)
    assert a.state_bytes() == b.state_bytes()


def test_deadletter_rate_alert_and_disabled_layer():
    stats = SimpleNamespace(bars_in=0, deadletter={})
    layer = OnlineLayer(_cfg(), reference=_reference())
    layer._stats = stats
    gen = Synthetic(6)
    got = []
    for i in range(30):
        stats.bars_in += K
        if i >= 10:
            stats.deadletter = {"sanity": stats.deadletter.get("sanity", 0) + 50}
        ts, syms, full, close, scores = gen.step()
        got.append(layer.on_scored(ts, syms, full, close, scores, Scorer()).alerts)
    first = _first(got, "deadletter_rate")
    assert first is not None and 10 <= first <= 13  # 50 % bad: over 5 % of the 20-step window by the 3rd
    off = OnlineLayer(OnlineConfig(enabled=False))
    ts, syms, full, close, scores = gen.step()
    assert off.on_scored(ts, syms, full, close, scores, Scorer()) is None
    mon = OnlineLayer(OnlineConfig())  # default: monitoring only, no online score
    res = mon.on_scored(ts, syms, full, close, scores, Scorer())
    assert res.online_scores is None and not mon.learners[5].n_learned


def test_layer_inside_scoring_pipeline():
    from stream.stages.models import ModelSource
    from stream.stages.pipeline import PipelineConfig, ScoringPipeline
    from stream.tools.publisher import bar_records
    from technic.data import clean_bars, load_bars
    from tests.stream.test_pipeline import FIX, LinearScorer
    bars, _ = clean_bars(load_bars(FIX / "bars_400d.csv.gz"))
    bars = bars[bars["date"] >= bars["date"].unique()[-150]]
    layer = OnlineLayer(OnlineConfig(warmup=100, online_learning=True))
    p = ScoringPipeline(ModelSource(None, scorer=LinearScorer()), config=PipelineConfig(grace_s=1e9, top_k=0),
                        extensions=[layer])
    layer.bind(p)
    outs = []
    for i, (_, _, v) in enumerate(bar_records(bars)):
        outs += p.on_bar(v, "technic.bars", 0, i)
        outs += p.poll()
    outs += p.flush()
    scores = [o.value for o in outs if o.kind == "scores"]
    assert scores and all("score_online" in v for v in scores[-50:])
    for v in scores[-20:]:
        validate("scores", orjson.loads(orjson.dumps(v)))
    assert layer.learners[5].n_learned > 100
    for o in outs:
        if o.kind == "alerts":
            validate("alerts", orjson.loads(orjson.dumps(o.value)))
