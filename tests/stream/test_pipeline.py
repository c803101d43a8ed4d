"""ScoringPipeline (no broker) against the batch path on the same data.

A fixed linear (ridge) Ensemble inside the production ``Scorer`` stands in for a trained
registry model, so the test isolates the stream mechanics (decoding, admission, sequence and
offset idempotency, timestamp closing, the incremental feature engine, cross-section, output
records) while the scoring call is the one production makes (``Scorer.predict``: per-timestamp
rank-gauss, models, contributions). The batch side is ``score_panel``, the production batch path.
"""

from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.io.codecs import validate
from stream.stages.models import ModelSource
from stream.stages.pipeline import PipelineConfig, ScoringPipeline
from stream.tools.publisher import bar_records, fundamental_records
from technic.data import clean_bars, load_bars, load_fundamentals, load_securities, sector_map
from technic.features.batch import compute_features
from technic.models.config import EnsembleConfig
from technic.models.ensemble import Ensemble
from technic.models.linear import RidgeModel
from technic.models.scoring import Scorer, score_panel

FIX = Path(__file__).resolve().parents[1] / "fixtures"
FEATS = ["mom_21", "vol_20", "cs_rank_mom_12_1", "earnings_yield", "beta_60", "sector_z_mom_21"]


def linear_ensemble(h: int, w) -> Ensemble:
    """An Ensemble serving one ridge model with fixed weights ``w`` on FEATS (score = w . z, NaN -> 0)."""
    m = RidgeModel(alpha=1.0)
    m.alpha_, m.coef_, m.intercept_ = 1.0, np.asarray(w, dtype=np.float64), 0.0
    m.n_features_in_, m.best_iteration_, m.alpha_scores_ = len(FEATS), 0, {}
    e = Ensemble(EnsembleConfig(models=("ridge",), blend=False), h)
    e.features_, e.models_, e.fit_s_, e.n_train_rows_ = list(FEATS), {"ridge": m}, {}, 0
    e.stacker_ = e.blend_ = e.win_prob_ = e.composite_ = None
    return e


class LinearScorer(Scorer):
    """The production ``Scorer`` serving one fixed linear model per horizon (no registry needed)."""

    def __init__(self, version="test-v1", sign=1.0):
        w = sign * np.linspace(1.0, 0.5, len(FEATS))
        super().__init__(version, FEATS, [5, 10], {5: linear_ensemble(5, w), 10: linear_ensemble(10, 0.5 * w)})


@pytest.fixture(scope="module")
def data():
    bars, _ = clean_bars(load_bars(FIX / "bars_400d.csv.gz"))
    fund = load_fundamentals(FIX / "fundamentals_400d.csv")
    secs = sector_map(load_securities(FIX / "securities_400d.csv"))
    return bars, fund, secs


def run_stream(records, fund, secs, scorer=None, flush=True, config=None):
    p = ScoringPipeline(ModelSource(None, scorer=scorer or LinearScorer()), sectors=secs,
                        config=config or PipelineConfig(grace_s=1e9))
    outs = []
    for i, (_, _, v) in enumerate(fundamental_records(fund)):
        outs += p.on_fundamental(v, offset=i)
    for i, (_, _, v) in enumerate(records):
        outs += p.on_bar(v, "technic.bars", 0, i)
        if i % 97 == 0:
            outs += p.poll()
    outs += p.flush() if flush else p.poll()
    return p, outs


def batch_scores(bars, fund, secs, scorer=None):
    """The batch path: every feature of the panel, then the scorer one timestamp at a time."""
    S = score_panel(compute_features(bars, fund, secs), scorer or LinearScorer())
    return {(sym, d.strftime("%Y-%m-%d")): v for (d, sym), v in S["score_5"].items()}


def test_stream_scores_equal_batch(data):
    bars, fund, secs = data
    p, outs = run_stream(list(bar_records(bars)), fund, secs)
    scores = [o.value for o in outs if o.kind == "scores"]
    expect = batch_scores(bars, fund, secs)
    assert len(scores) == len(expect) == len(bars)
    got = {(v["symbol"], v["ts"]): v["scores"]["5d"] for v in scores}
    assert len(got) == len(scores)  # no duplicate keys
    diff = max(abs(got[k] - expect[k]) for k in expect)
    assert diff <= 1e-9
    for v in scores[:50]:
        validate("scores", orjson.loads(orjson.dumps(v)))
    assert p.stats.redelivered == 0 and not p.stats.deadletter


def test_redelivery_and_bad_records_do_not_change_scores(data):
    bars, fund, secs = data
    recs = list(bar_records(bars))
    clean = {(o.value["symbol"], o.value["ts"]): o.value["scores"]["5d"]
             for o in run_stream(recs, fund, secs)[1] if o.kind == "scores"}
    noisy = []
    for i, r in enumerate(recs):
        noisy.append(r)
        if i % 50 == 0:
            noisy.append(r)  # redelivered
        if i % 77 == 0:
            noisy.append((r[0], r[1], b"{not json"))
        if i % 91 == 0:
            bad = orjson.loads(r[2])
            bad["high"], bad["low"] = 1.0, 2.0
            noisy.append((r[0], r[1], orjson.dumps(bad)))
    p, outs = run_stream(noisy, fund, secs)
    got = {(o.value["symbol"], o.value["ts"]): o.value["scores"]["5d"] for o in outs if o.kind == "scores"}
    assert got == clean
    dead = [o.value for o in outs if o.kind == "deadletter"]
    assert p.stats.redelivered == len(range(0, len(recs), 50))
    assert {d["reason_code"] for d in dead} == {"deserialize", "sanity"}
    assert len(dead) == len(range(0, len(recs), 77)) + len(range(0, len(recs), 91))
    for d in dead[:5]:
        validate("deadletter", d)


def test_out_of_order_and_late_bars_are_dead_lettered(data):
    bars, fund, secs = data
    recs = list(bar_records(bars))
    p, _ = run_stream(recs[:2000], fund, secs, flush=False)
    first = orjson.loads(recs[0][2])
    stale = dict(first, seq=10_000)  # new seq, old timestamp
    out = p.on_bar(orjson.dumps(stale), "technic.bars", 0, 99_999)
    assert out[0].kind == "deadletter" and out[0].value["reason_code"] == "out_of_order"


def test_sequence_gap_raises_alert(data):
    bars, fund, secs = data
    recs = list(bar_records(bars))
    skip = next(i for i, r in enumerate(recs) if orjson.loads(r[2])["seq"] == 30)
    p, outs = run_stream(recs[:skip] + recs[skip + 1:], fund, secs)
    alerts = [o.value for o in outs if o.kind == "alerts" and o.value["type"] == "data_gap"]
    assert alerts and alerts[0]["symbol"] == orjson.loads(recs[skip][2])["symbol"]


def test_hot_reload_switches_at_next_timestamp(data):
    bars, fund, secs = data
    recs = list(bar_records(bars))
    p = ScoringPipeline(ModelSource(None, scorer=LinearScorer("v1")), sectors=secs)
    outs = []
    for i, (_, _, v) in enumerate(recs[:1200]):
        outs += p.on_bar(v, "technic.bars", 0, i)
        outs += p.poll()
    p.models.pending = LinearScorer("v2", sign=-1.0)
    for i, (_, _, v) in enumerate(recs[1200:], start=1200):
        outs += p.on_bar(v, "technic.bars", 0, i)
        outs += p.poll()
    outs += p.flush()
    by_ts = {}
    for o in outs:
        if o.kind == "scores":
            by_ts.setdefault(o.value["ts"], set()).add(o.value["model_version"])
    assert all(len(v) == 1 for v in by_ts.values())  # never two models in one timestamp
    versions = [next(iter(by_ts[t])) for t in sorted(by_ts)]
    switch = versions.index("v2")
    assert set(versions[:switch]) == {"v1"} and set(versions[switch:]) == {"v2"}


def test_missing_symbol_closes_by_watermark_and_quiet_input(data):
    """A symbol that stops delivering neither blocks the stream nor loses other scores."""
    bars, fund, secs = data
    dates = sorted(bars["date"].unique())
    gone = bars[~((bars["symbol"] == "MSFT") & (bars["date"] > dates[300]))]      # stops for good
    gone = gone[~((gone["symbol"] == "XOM") & (gone["date"] == dates[-1]))]      # misses the last one
    clock = {"t": 0.0}
    p = ScoringPipeline(ModelSource(None, scorer=LinearScorer()), sectors=secs,
                        config=PipelineConfig(grace_s=5.0, max_pending=2), clock=lambda: clock["t"])
    outs = []
    for i, (_, _, v) in enumerate(bar_records(gone)):
        outs += p.on_bar(v, "technic.bars", 0, i)
        outs += p.poll()
    assert len(p.pending) == 1            # only the last timestamp waits
    outs += p.poll(now=clock["t"] + 1.0)  # not quiet long enough
    assert len(p.pending) == 1
    outs += p.poll(now=clock["t"] + 6.0)  # input quiet for > grace: close it
    assert not p.pending
    scores = [o.value for o in outs if o.kind == "scores"]
    assert len(scores) == len(gone)
    stale = [o.value for o in outs if o.kind == "alerts" and o.value["type"] == "stale_symbol"]
    assert {a["symbol"] for a in stale} == {"DHR", "O", "MSFT", "XOM"}  # DHR and O: the March-2015 gap
    assert "MSFT" not in p.active and "XOM" not in p.active


def test_feature_history_matches_each_symbols_past_normalized_rows(data):
    """Sequence models get the symbol's own last seq_len rows, each normalized against its own
    timestamp's cross-section (float32), oldest first, NaN-padded."""
    from technic.models.preprocess import cross_sectional_transform
    bars, fund, secs = data
    p, outs = run_stream(list(bar_records(bars)), fund, secs, config=PipelineConfig(grace_s=1e9, history_always=True))
    F = compute_features(bars, fund, secs)
    Z = cross_sectional_transform(F)
    names = sorted(bars["symbol"].unique())
    cols = [0, 5, 40]
    h = p.history(names, cols, 10)
    assert h.dtype == np.float32
    for i, sym in enumerate(names):
        own = Z.xs(sym, level="symbol").iloc[-10:, cols].to_numpy().astype(np.float32)
        np.testing.assert_array_equal(h[i], own)
    first = bars[bars["date"] <= bars["date"].min()]
    short = run_stream(list(bar_records(first)), fund, secs, config=PipelineConfig(grace_s=1e9, history_always=True))[0]
    hs = short.history(names, cols, 3)
    assert np.isnan(hs[:, :2]).all()  # padding before the first bar
    np.testing.assert_array_equal(hs[:, 2], cross_sectional_transform(compute_features(first, fund, secs))
                                  .iloc[:, cols].to_numpy().astype(np.float32))
    small = run_stream(list(bar_records(bars)), fund, secs,
                       config=PipelineConfig(grace_s=1e9, history_always=True, history_len=4))[0]
    g = small.history(names, cols, 10)            # a longer window than kept: the ring grows, rows survive
    np.testing.assert_array_equal(g[:, -4:], h[:, -4:])
    assert np.isnan(g[:, :-4]).all() and small.ring.length == 10
    plain = run_stream(list(bar_records(first)), fund, secs)[0]   # tree-only model: no history kept
    assert np.isnan(plain.history(names, cols, 3)).all()