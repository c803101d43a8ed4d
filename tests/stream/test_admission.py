"""Strict input (stream.stages.admission, stream.stages.redelivery): wrong keys, conflicting and late redeliveries.

Every check is driven through the Router with the Kafka key, as the worker consumes, and every
rejected record must leave the scores of a clean run untouched.
"""

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.io.codecs import validate
from stream.service.metrics import render
from stream.stages.models import ModelSource
from stream.stages.pipeline import PipelineConfig, ScoringPipeline
from stream.tools.publisher import bar_records, fundamental_records
from stream.stages.redelivery import CONFLICT, EXACT, NEVER_APPLIED, UNVERIFIED, SeqDigests
from stream.io.topics_config import topic_name
from stream.service.router import Router

from .test_pipeline import LinearScorer, data  # noqa: F401 (fixture)

BARS, FUND = topic_name("bars"), topic_name("fundamentals")


def _router(secs):
    return Router(ScoringPipeline(ModelSource(None, scorer=LinearScorer()), sectors=secs,
                                  config=PipelineConfig(grace_s=1e9)))


def _feed(data, inserts=None, n_days=30):  # noqa: F811
    """Fundamentals, then the first ``n_days`` of bars with ``inserts[i]`` = [(key, value)] before bar i."""
    bars, fund, secs = data
    keep = sorted(bars["date"].unique())[:n_days]
    recs = list(bar_records(bars[bars["date"].isin(keep)]))
    r = _router(secs)
    outs = []
    for i, (_, k, v) in enumerate(fundamental_records(fund)):
        outs += r.handle(FUND, 0, i, k, v)
    off = 0
    per_insert = []
    for i, (_, k, v) in enumerate(recs):
        for key, raw in (inserts or {}).get(i, ()):
            o = r.handle(BARS, 0, off, key, raw)
            per_insert.append(o)
            outs += o
            off += 1
        outs += r.handle(BARS, 0, off, k, v)
        off += 1
    outs += r.pipeline.flush()
    scores = {(o.value["symbol"], o.value["ts"]): o.value["scores"] for o in outs if o.kind == "scores"}
    return r, recs, outs, per_insert, scores


def _dead(outs):
    return [o for o in outs if o.kind == "deadletter"]


def test_bar_key_must_be_its_symbol(data):  # noqa: F811
    _, recs, _, _, clean = _feed(data)
    first = orjson.loads(recs[0][2])
    later = recs[40]
    wrong = {40: [(b"ZZZ", later[2]), (None, later[2]), (first["symbol"].lower().encode(), later[2])]}
    r, _, outs, per, scores = _feed(data, wrong)
    assert scores == clean                               # nothing applied from the bad records
    for o in per:
        (d,) = _dead(o)
        assert d.value["reason_code"] == "key_mismatch"
        assert d.key == BARS.encode()                   # dead letters are keyed by the source topic
        assert d.value["source_topic"] == BARS and d.value["offset"] is not None
        validate("deadletter", d.value)
    assert "null key" in per[1][0].value["reason"] and "'ZZZ'" in per[0][0].value["reason"]
    assert r.pipeline.stats.deadletter["key_mismatch"] == 3 and r.pipeline.stats.redelivered == 0


def test_fundamentals_and_alt_keys_are_checked(data):  # noqa: F811
    _, fund, secs = data
    r = _router(secs)
    (_, k, v) = next(iter(fundamental_records(fund)))
    assert r.handle(FUND, 0, 0, k, v) == []
    (d,) = r.handle(FUND, 0, 1, b"OTHER", v)
    assert d.value["reason_code"] == "key_mismatch" and d.key == FUND.encode()
    alt = orjson.dumps({"symbol": "AAPL", "ts": "2014-01-02", "field": "sentiment", "value": 0.1, "seq": 0})
    assert r.handle(topic_name("alt"), 0, 0, b"AAPL", alt) == []
    (d,) = r.handle(topic_name("alt"), 0, 1, None, alt)
    assert d.value["reason_code"] == "key_mismatch"


def test_redeliveries_exact_conflicting_and_late(data):  # noqa: F811
    _, recs, _, _, clean = _feed(data)
    sym_recs = [(k, orjson.loads(v)) for _, k, v in recs]
    key0, bar0 = sym_recs[0]
    exact_respelled = orjson.dumps(dict(reversed(list(bar0.items()))))      # same content, other JSON text
    conflicting = orjson.dumps(dict(bar0, close=bar0["close"] * 1.01))     # same seq, another close
    inserts = {200: [(key0, recs[0][2]), (key0, exact_respelled), (key0, conflicting)]}
    r, _, outs, per, scores = _feed(data, inserts)
    assert scores == clean
    assert per[0] == [] and per[1] == []                                   # exact: skipped ...
    st = r.pipeline.stats
    assert st.redelivered == 2                                              # ... and counted
    (d,) = _dead(per[2])
    assert d.value["reason_code"] == "conflicting_redelivery" and d.key == BARS.encode()
    assert st.conflicting_redeliveries == 1 == st.deadletter["conflicting_redelivery"]
    validate("deadletter", d.value)
    text = render(r.pipeline, r).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["technic_bars_conflicting_redelivery"].samples[0].value == 1
    assert fams["technic_bars_redelivered"].samples[0].value == 2


def test_a_seq_that_was_never_applied_is_a_late_bar_not_a_redelivery(data):  # noqa: F811
    bars, _, _ = data
    recs = list(bar_records(bars))
    sym = orjson.loads(recs[0][2])["symbol"]
    own = [i for i, (_, k, _) in enumerate(recs) if k == sym.encode()]
    skipped = own[5]                                   # seq 5 of that symbol goes missing ...
    r = _router(data[2])
    outs = []
    for off, i in enumerate([j for j in range(len(recs)) if j != skipped][:own[8]]):
        outs += r.handle(BARS, 0, off, recs[i][1], recs[i][2])
    assert [o.value["type"] for o in outs if o.kind == "alerts"] == ["data_gap"]
    (d,) = r.handle(BARS, 0, 10**6, recs[skipped][1], recs[skipped][2])   # ... and arrives late
    assert d.value["reason_code"] == "out_of_order" and "never applied" in d.value["reason"]
    assert r.pipeline.stats.redelivered == 0


def test_seq_digests_window():
    d = SeqDigests(window=8)
    for s in range(0, 40, 2):         # seqs 0, 2, ..., 38; digest = seq * 10
        d.add("A", s, s * 10)
    assert d.classify("A", 38, 380) == EXACT and d.classify("A", 36, 1) == CONFLICT
    assert d.classify("A", 37, 370) == NEVER_APPLIED
    assert d.classify("A", 0, 0) == UNVERIFIED and d.unverified == 1     # older than the window
    assert d.classify("B", 0, 0) == UNVERIFIED
    with pytest.raises(ValueError):
        SeqDigests(0)


def test_offset_ledger_skips_offsets_replayed_after_a_restart(data):  # noqa: F811
    """What a Faust group consumer may do after a restart (faust-streaming #48/#606): re-deliver a few
    offsets the worker already handled. The ledger skips and counts them before the pipeline sees them."""
    bars, _, secs = data
    recs = list(bar_records(bars))[:120]
    r = _router(secs)
    for off, (_, k, v) in enumerate(recs[:100]):
        r.handle(BARS, 0, off, k, v)
    applied = r.pipeline.stats.bars_in
    for off in range(95, 120):                  # 95..99 again, then new ones
        r.handle(BARS, 0, off, recs[off][1], recs[off][2])
    assert r.ledger.skipped == 5 and r.pipeline.stats.redelivered == 0
    assert r.pipeline.stats.bars_in == applied + 20 and not r.ledger.gaps
    r.handle(BARS, 0, 125, recs[0][1], recs[0][2])   # a forward jump is recorded as a gap
    assert r.ledger.gaps == [(BARS, 0, 119, 125)]


def test_timestamps_outside_the_nanosecond_range_are_dead_lettered_not_wrapped(data):  # noqa: F811
    """numpy wraps a date outside int64 nanoseconds around to another one (1500 -> 2084, 2300 -> 1715):
    such a bar used to be admitted at the wrapped date, with its new seq, and every later good bar of
    the symbol was dead-lettered; a fundamental from 2300 applied at once (a look-ahead)."""
    _, recs, _, _, clean = _feed(data)
    key, bar = recs[40][1], orjson.loads(recs[40][2])
    ancient = [(key, orjson.dumps(dict(bar, ts=ts, seq=bar["seq"] + 1))) for ts in ("1500-06-01", "0001-01-01")]
    r, _, outs, per, scores = _feed(data, {40: ancient})
    assert scores == clean
    assert [_dead(o)[0].value["reason_code"] for o in per] == ["sanity", "sanity"]
    fund = orjson.dumps({"symbol": "AAPL", "period_end": "2300-01-01", "available_from": "2300-01-01", "seq": 0,
                         "fields": {"net_income": 1.0}})
    alt = orjson.dumps({"symbol": "AAPL", "ts": "1500-01-01", "field": "sentiment", "value": 0.1, "seq": 0})
    eng = r.pipeline.engine
    def queued():
        return [{k: len(v) for k, v in d.items()} for d in (eng.pending_fund, eng.pending_alt)]
    before = queued()
    for topic, raw in ((FUND, fund), (topic_name("alt"), alt)):
        (d,) = r.handle(topic, 0, 10**6, b"AAPL", raw)   # past the offsets already read
        assert d.value["reason_code"] == "sanity" and "nanosecond range" in d.value["reason"]
    assert queued() == before                         # nothing queued


def test_split_stage_rejects_timestamps_outside_the_nanosecond_range(data):  # noqa: F811
    from stream.stages.symbol import SymbolStage
    _, recs, _, _, _ = _feed(data, n_days=2)
    st = SymbolStage(data[2])
    for _, k, v in recs[:12]:
        assert st.on_bar(v, key=k)[0].kind == "features"
    key, bar = recs[12][1], orjson.loads(recs[12][2])
    (d,) = st.on_bar(orjson.dumps(dict(bar, ts="1500-06-01", seq=bar["seq"] + 1)), key=key)
    assert d.value["reason_code"] == "sanity"
    assert st.on_bar(recs[12][2], key=key)[0].value["ts"] == bar["ts"]   # the good bar still applies
