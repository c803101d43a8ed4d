"""Property-based bad input (hypothesis): the scorer survives bad producers.

Bad-input classes (``CLASSES``), each mixed at random positions into a clean
stream of good bars (12 symbols of the 400-day fixture):

malformed JSON (truncated records, random bytes, NaN/Infinity literals, 1e999),
wrong types, missing required fields, extra fields, NaN/inf given as strings,
non-positive prices, high < low, negative volume, malformed symbols, malformed
or impossible timestamps, timestamps far in the future, timestamps before the nanosecond
range (year < 1678: they used to wrap around to a later date and be applied), oversize payloads
(> 64 KiB), a duplicate bar (same symbol and timestamp, new seq), an
out-of-order bar (earlier timestamp, new seq), an exact redelivery (a copy of
an already applied bar, same seq), a conflicting redelivery (an applied seq with
other content), a valid bar whose Kafka key is not its symbol (or null), unknown
model versions and malformed commands on the control topic, malformed
fundamentals and alt records. Every record carries a Kafka key, as on the broker.

Contract checked for every example:

* the pipeline never raises;
* every bad record yields exactly one dead-letter record (schema-valid, with
  its origin offset) whose ``reason_code`` is one the class allows - except an
  exact redelivery (a ``seq`` already applied, with the same content),
  which is not an error: it is skipped and counted in ``stats.redelivered``;
* good records yield no dead letter, and the scores of the good records are
  identical (every field but ``emit_time``) to a clean run without the bad ones.

Level (a) runs in process (the bulk: >= 10,000 bad records); level (b) sends a
few thousand records through the real broker and a real worker process and
checks the same on the scores and dead-letter topics.

A *well-formed* symbol outside the universe is accepted when the universe is
open (the default: new listings just appear) and dead-lettered as
``unknown_symbol`` when one is configured; see
``test_unknown_symbol_is_dead_lettered_when_a_universe_is_configured``.
"""

from __future__ import annotations

import asyncio
import os
import time

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stream.io.codecs import validate
from stream.stages.models import ModelSource
from stream.stages.pipeline import PipelineConfig, ScoringPipeline
from stream.tools.publisher import bar_records, fundamental_records
from technic.errors import RegistryError

from .test_pipeline import FIX, LinearScorer, data  # noqa: F401 (fixture)

N_DAYS = 25                       # good bars per example: 12 symbols x 25 days (the feature engine costs ~50 ms/day)
N_DAYS_BROKER = 60                # good bars through the broker: 12 x 60
EXAMPLES, PER_EXAMPLE = int(os.environ.get("FUZZ_EXAMPLES", 25)), (400, 440)
TOTALS = {"bad": 0, "dead": 0, "redelivered": 0, "good": 0, "by_class": {}}

# class -> reason codes it may produce (None = counted as a redelivery, no dead letter)
CLASSES = {
    "malformed_json": {"deserialize", "schema"},
    "wrong_type": {"schema"},
    "missing_field": {"schema"},
    "extra_field": {"schema"},
    "nan_inf_string": {"schema"},
    "nan_inf_literal": {"deserialize"},
    "non_positive_price": {"schema", "sanity"},
    "high_below_low": {"sanity"},
    "negative_volume": {"schema", "sanity"},
    "malformed_symbol": {"schema"},
    "malformed_ts": {"schema", "sanity"},
    "future_ts": {"sanity"},
    "ancient_ts": {"sanity"},
    "oversize": {"oversize"},
    "duplicate_bar": {"duplicate"},
    "out_of_order_bar": {"out_of_order"},
    "redelivery": None,
    "conflicting_redelivery": {"conflicting_redelivery"},
    "wrong_key": {"key_mismatch"},
    "control_unknown_model": {"unknown_model"},
    "control_malformed": {"deserialize", "schema"},
    "fundamental_malformed": {"deserialize", "schema"},
    "alt_malformed": {"deserialize", "schema"},
}
SIDE_KIND = {"control_unknown_model": "control", "control_malformed": "control",
             "fundamental_malformed": "fundamentals", "alt_malformed": "alt"}
REQUIRED = ["symbol", "ts", "seq", "close", "volume"]
PRICES = ["open", "high", "low", "close"]


def _rejecting_loader(root, version):
    raise RegistryError(f"model version {version!r} not found in registry {root}")


def make_pipeline(secs):
    models = ModelSource("/nonexistent-registry", scorer=LinearScorer(), loader=_rejecting_loader)
    return ScoringPipeline(models, sectors=secs, config=PipelineConfig(grace_s=1e9))


def score_view(v: dict) -> dict:
    return {k: x for k, x in v.items() if k != "emit_time"}


@pytest.fixture(scope="module")
def stream_data(data):  # noqa: F811
    return prepare(data, N_DAYS)


def prepare(data, n_days):  # noqa: F811
    bars, fund, secs = data
    keep = sorted(bars["date"].unique())[:n_days]
    bars = bars[bars["date"].isin(keep)].reset_index(drop=True)
    good = [v for _, _, v in bar_records(bars)]
    keys = [k for _, k, _ in bar_records(bars)]
    fund_recs = [v for _, _, v in fundamental_records(fund)]
    # per position i (before good[i]): last applied bar per symbol, first bar per symbol
    last, first, states = {}, {}, []
    for v in good:
        states.append((dict(last), dict(first)))
        r = orjson.loads(v)
        last[r["symbol"]] = r
        first.setdefault(r["symbol"], r)
    states.append((dict(last), dict(first)))
    p, outs = run(secs, fund_recs, good, {})
    clean = {(o.value["symbol"], o.value["ts"]): score_view(o.value) for o in outs if o.kind == "scores"}
    assert len(clean) == len(good) and not p.stats.deadletter
    assert keys == [symbol_key(v) for v in good]  # the publisher keys bars by symbol
    CTX.update(good=good, states=states)
    return {"good": good, "fund": fund_recs, "secs": secs, "states": states, "clean": clean}


def symbol_key(raw: bytes):
    """The Kafka key a producer would use: the payload's symbol when it has one, else b"X"."""
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return b"X"
    sym = rec.get("symbol") if isinstance(rec, dict) else None
    return sym.encode() if isinstance(sym, str) else b"X"


def run(secs, fund_recs, good, inserts):
    """Drive a pipeline: fundamentals, then good bars with ``inserts[i]`` (kind, raw, cls, key) before good[i]."""
    p = make_pipeline(secs)
    outs, per_bad = [], []
    for i, v in enumerate(fund_recs):
        outs += p.on_fundamental(v, "fundamentals", 0, i, key=symbol_key(v))
    off = {"bars": 0, "control": 0, "fundamentals": len(fund_recs), "alt": 0}
    handler = {"bars": p.on_bar, "control": p.on_control, "fundamentals": p.on_fundamental, "alt": p.on_alt}
    for i in range(len(good) + 1):
        for kind, raw, cls, key in inserts.get(i, ()):
            before = p.stats.redelivered
            o = handler[kind](raw, kind, 0, off[kind], key=key)
            per_bad.append((cls, kind, 0, off[kind], o, p.stats.redelivered - before))
            off[kind] += 1
            outs += o
        if i < len(good):
            o = p.on_bar(good[i], "bars", 0, off["bars"], key=symbol_key(good[i]))
            off["bars"] += 1
            assert not any(x.kind == "deadletter" for x in o), o  # a good record is never dead-lettered
            outs += o
            if i % 50 == 0:
                outs += p.poll()
    outs += p.flush()
    p.per_bad = per_bad
    return p, outs


# ---------------------------------------------------------------- strategies
I64 = st.integers(-2**63, 2**63 - 1)
CTX: dict = {}  # the good stream's state, set by the stream_data fixture (kept out of hypothesis' reprs)
junk_values = st.one_of(st.text(max_size=8), st.booleans(), st.lists(I64, max_size=3),
                        st.dictionaries(st.text(max_size=3), I64, max_size=2))
bad_symbols = st.one_of(
    st.text(max_size=20).filter(lambda s: not (s[:1].isascii() and s[:1].isupper() and len(s) <= 15
                                               and all(c.isascii() and (c.isupper() or c.isdigit() or c in ".-")
                                                       for c in s)) or s == ""),
    st.sampled_from(["aapl", "", " AAPL", "AAPL ", "A" * 16, "1ABC", "A/B", "A_B", "ÄPPLE"]))
far_future = st.builds(lambda y, m, d, t: f"{y:04d}-{m:02d}-{d:02d}" + t, st.integers(2100, 9999),
                       st.integers(1, 12), st.integers(1, 28), st.sampled_from(["", "T10:00:00Z", " 16:00"]))
ancient_ts = st.one_of(  # valid ISO dates before 1677-09-21, the first int64-nanosecond timestamp
    st.builds(lambda y, m, d, t: f"{y:04d}-{m:02d}-{d:02d}" + t, st.integers(1, 1677), st.integers(1, 12),
              st.integers(1, 28), st.sampled_from(["", "T10:00:00Z", " 16:00"])),
    st.sampled_from(["0001-01-01", "1500-06-01", "1677-09-20", "1677-09-21T00:00:00Z"]))
malformed_ts = st.one_of(st.sampled_from(["2017-02-30", "2017-13-01", "2017-00-10", "17-01-01", "2017/01/03",
                                          "yesterday", "", "2017-01-03T25:00:00Z", "2017-01-03T10:61"]),
                         st.text(max_size=12).filter(lambda s: not s[:4].isdigit()))


@st.composite
def bad_record(draw):
    """(position, kind, raw bytes, class) of one bad record, given the good stream's state (CTX)."""
    ctx = CTX
    good, states = ctx["good"], ctx["states"]
    names = sorted(CLASSES)
    cls = names[draw(st.integers(0, 10**6)) % len(names)]  # sampled_from favours its first element
    i = draw(st.integers(0, len(good)))
    last, first = states[i]
    base = orjson.loads(good[min(i, len(good) - 1)])
    rec = dict(base, seq=base["seq"] + 10_000)  # schema-valid otherwise; new seq
    raw = None
    if cls == "malformed_json":
        src = good[min(i, len(good) - 1)]
        raw = draw(st.one_of(st.integers(0, len(src) - 1).map(lambda k: src[:k]),
                             st.binary(max_size=80).filter(lambda b: not b.startswith(b"{\"")),
                             st.just(src[:-1] + b",}"), st.just(src.replace(b'"', b"'", 2))))
    elif cls == "wrong_type":
        f = draw(st.sampled_from(REQUIRED + PRICES))
        rec[f] = draw(junk_values.filter(lambda x: not isinstance(x, str)) if f in ("symbol", "ts") else junk_values)
    elif cls == "missing_field":
        for f in draw(st.sets(st.sampled_from(REQUIRED), min_size=1)):
            rec.pop(f)
    elif cls == "extra_field":
        rec[draw(st.sampled_from(["adj_close", "Name", "extra", "x"]))] = draw(I64)
    elif cls == "nan_inf_string":
        rec[draw(st.sampled_from(PRICES + ["volume"]))] = draw(st.sampled_from(["NaN", "nan", "Infinity", "-inf", "inf"]))
    elif cls == "nan_inf_literal":
        f = draw(st.sampled_from(PRICES + ["volume"]))
        lit = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]))
        rec[f] = "__LIT__"
        raw = orjson.dumps(rec).replace(b'"__LIT__"', lit.encode())
    elif cls == "non_positive_price":
        f = draw(st.sampled_from(PRICES))
        rec[f] = draw(st.one_of(st.just(0.0), st.just(-0.0), st.floats(max_value=0, allow_nan=False,
                                                                          allow_infinity=False), st.integers(-10**6, 0)))
        if f in ("high", "low"):  # keep high >= low so only the price sign is wrong
            rec["high" if f == "low" else "low"] = rec[f] if f == "low" else rec["low"]
    elif cls == "high_below_low":
        hi = draw(st.floats(0.01, 1e5))
        rec["high"], rec["low"] = hi, hi * (1 + draw(st.floats(1e-6, 10)))
    elif cls == "negative_volume":
        rec["volume"] = draw(st.one_of(st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False),
                                       st.integers(-2**63, -1)))
    elif cls == "malformed_symbol":
        rec["symbol"] = draw(bad_symbols)
    elif cls == "malformed_ts":
        rec["ts"] = draw(malformed_ts)
    elif cls == "future_ts":
        rec["ts"] = draw(far_future)
    elif cls == "ancient_ts":
        rec["ts"] = draw(ancient_ts)
    elif cls == "oversize":
        n = draw(st.integers(65537, 150_000))
        src = good[min(i, len(good) - 1)]
        raw = src[:-1] + b" " * (n - len(src)) + b"}"  # valid JSON, only too big
    elif cls in ("duplicate_bar", "out_of_order_bar", "redelivery", "conflicting_redelivery"):
        if not last:
            cls, rec = "high_below_low", dict(rec, high=1.0, low=2.0)
        else:
            sym = draw(st.sampled_from(sorted(last)))
            if cls == "redelivery":
                rec = dict(draw(st.sampled_from([last[sym], first[sym]])))
            elif cls == "conflicting_redelivery":
                rec = dict(draw(st.sampled_from([last[sym], first[sym]])))
                f = draw(st.sampled_from(["close", "volume", "ts"]))
                if f == "ts":   # same seq, another (valid, past) timestamp
                    rec["ts"] = "2000-01-03"
                else:
                    rec[f] = rec[f] * draw(st.sampled_from([0.5, 1.01, 2.0])) + (1.0 if f == "volume" else 0.0)
            elif cls == "duplicate_bar" or first[sym]["ts"] == last[sym]["ts"]:
                cls, rec = "duplicate_bar", dict(last[sym], seq=last[sym]["seq"] + draw(st.integers(1, 10**6)))
                rec["close"] = rec["close"] * draw(st.floats(0.5, 2))
            else:
                rec = dict(first[sym], seq=last[sym]["seq"] + draw(st.integers(1, 10**6)))
    elif cls == "wrong_key":  # a valid new bar (new seq) under another key, or none
        key = draw(st.one_of(st.none(), st.binary(max_size=8).filter(lambda k: k != rec["symbol"].encode()),
                             st.just(rec["symbol"].lower().encode())))
        return i, "bars", orjson.dumps(rec), cls, key
    elif cls == "control_unknown_model":
        rec = {"type": draw(st.sampled_from(["model_promoted", "reload"])), "at": "2017-01-03T10:00:00Z",
               "model_version": draw(st.text(min_size=1, max_size=30))}
    elif cls == "control_malformed":
        rec = draw(st.one_of(
            st.just({"type": "model_promoted", "at": "2017-01-03"}),          # no model_version
            st.builds(lambda t: {"type": t, "at": "2017-01-03"}, st.text(max_size=10).filter(
                lambda t: t not in ("model_promoted", "reload", "retrain_requested", "pause", "resume"))),
            st.builds(lambda a: {"type": "reload", "at": a}, junk_values)))
        if draw(st.booleans()):
            raw = orjson.dumps(rec)[:-1]
    elif cls in ("fundamental_malformed", "alt_malformed"):
        rec = draw(st.one_of(st.dictionaries(st.sampled_from(["symbol", "ts", "field", "value", "x"]), junk_values,
                                             max_size=4), st.just([1, 2])))
        if draw(st.booleans()):
            raw = orjson.dumps(rec)[:-1] + b"\x00"
    if raw is None:
        raw = orjson.dumps(rec)
    kind = SIDE_KIND.get(cls, "bars")
    return i, kind, raw, cls, (None if kind == "control" else symbol_key(raw))


def check_bad(per_bad, totals=None) -> None:
    """Each ``(class, topic kind, partition, offset, outputs, redelivered)`` of one bad record: exactly one
    dead letter naming that origin with an allowed reason, or (exact redelivery) none and one counted."""
    totals = TOTALS if totals is None else totals
    for cls, kind, partition, off, outs, redelivered in per_bad:
        dead = [o.value for o in outs if o.kind == "deadletter"]
        allowed = CLASSES[cls]
        if allowed is None:
            assert redelivered == 1 and not dead, (cls, outs)
        else:
            assert len(dead) == 1 and redelivered == 0, (cls, kind, outs)
            d = dead[0]
            assert d["reason_code"] in allowed, (cls, d)
            assert (d["source_topic"], d["partition"], d["offset"]) == (kind, partition, off)
        totals["by_class"][cls] = totals["by_class"].get(cls, 0) + 1


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its example at once
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_bad_records_dead_lettered_good_scores_unchanged(stream_data, data_):
    ctx = stream_data
    n = data_.draw(st.integers(*PER_EXAMPLE))
    bad = data_.draw(st.lists(bad_record(), min_size=n, max_size=n))
    inserts: dict = {}
    for i, kind, raw, cls, key in bad:
        inserts.setdefault(i, []).append((kind, raw, cls, key))
    p, outs = run(ctx["secs"], ctx["fund"], ctx["good"], inserts)  # never raises
    check_bad(p.per_bad)
    got = {}
    for o in outs:
        if o.kind == "scores":
            k = (o.value["symbol"], o.value["ts"])
            assert k not in got, f"duplicate score {k}"
            got[k] = score_view(o.value)
    assert got == ctx["clean"]
    dead = [o.value for o in outs if o.kind == "deadletter"]
    n_redelivered = sum(1 for *_, r in p.per_bad if r)
    assert len(dead) + n_redelivered == len(bad)
    for d in dead[:: max(1, len(dead) // 20)]:
        validate("deadletter", d)
    TOTALS["bad"] += len(bad)
    TOTALS["dead"] += len(dead)
    TOTALS["redelivered"] += n_redelivered
    TOTALS["good"] += len(ctx["good"])


def test_fuzz_volume_and_class_coverage():
    """Runs after the property test (file order): >= 10,000 bad records, every class exercised."""
    if TOTALS["bad"] == 0:
        pytest.skip("property test not run in this session")
    print(f"\nfuzz (in-process): {TOTALS}")
    assert TOTALS["bad"] >= 10_000
    assert set(TOTALS["by_class"]) == set(CLASSES)
    assert TOTALS["dead"] + TOTALS["redelivered"] == TOTALS["bad"]


def test_unknown_symbol_is_dead_lettered_when_a_universe_is_configured(stream_data):
    """The universe is open by default (new listings just appear); with one configured, a
    well-formed symbol outside it is dead-lettered instead of joining the cross-section."""
    raw = orjson.dumps({"symbol": "ZZZZ9", "ts": "2014-01-02", "seq": 0, "close": 10.0, "volume": 1.0})
    models = ModelSource("/nonexistent-registry", scorer=LinearScorer(), loader=_rejecting_loader)
    p = ScoringPipeline(models, sectors=stream_data["secs"],
                        config=PipelineConfig(grace_s=1e9, universe=frozenset(stream_data["secs"])))
    outs = p.on_bar(raw, "bars", 0, 0)
    assert [o.value["reason_code"] for o in outs if o.kind == "deadletter"] == ["unknown_symbol"]
    validate("deadletter", outs[0].value)
    assert not make_pipeline(stream_data["secs"]).on_bar(raw, "bars", 0, 0)  # open universe: accepted


# ------------------------------------------------------- (b) real broker + worker
@pytest.mark.broker
def test_fuzz_through_broker_and_worker(broker, data, tmp_path, monkeypatch):  # noqa: F811
    """A few thousand records (720 good bars + 2,000 bad ones) through the real broker and worker."""
    from bench.soak import WorkerProc
    from stream.tools.publisher import publish
    from stream.tools.tail import tail
    from stream.io.topics_config import create_topics, topic_name, topic_specs
    from stream.io.topic_reader import read_to_end

    ctx = prepare(data, N_DAYS_BROKER)
    prefix = f"fz{time.time_ns() % 10**9}."
    monkeypatch.setenv("TECHNIC_TOPIC_PREFIX", prefix)
    create_topics(broker.bootstrap, topic_specs())
    # one deterministic draw of ~1,600 bad records from the same strategy
    bad = _deterministic_examples(st.lists(bad_record(), min_size=200, max_size=200), 10)  # 2,000 records
    inserts: dict = {}
    for i, kind, raw, cls, key in bad:
        inserts.setdefault(i, []).append((kind, raw, cls, key))
    # expected outcome from the in-process pipeline (same order per topic)
    p_ref, outs_ref = run(ctx["secs"], ctx["fund"], ctx["good"], inserts)
    check_bad(p_ref.per_bad)
    expect_dead = {(topic_name(k), off): cls for cls, k, _, off, o, r in p_ref.per_bad if not r}
    n_redelivered = sum(1 for *_, r in p_ref.per_bad if r)

    side = [(topic_name("fundamentals"), symbol_key(v), v) for v in ctx["fund"]]
    side += [(topic_name(k), key, raw) for i in sorted(inserts) for k, raw, _, key in inserts[i] if k == "fundamentals"]
    asyncio.run(publish(broker.bootstrap, side))
    worker = WorkerProc(broker.bootstrap, prefix, tmp_path, registry=None, grace=2.0,
                        securities=FIX / "securities_400d.csv").start()
    try:
        stream = []
        for i in range(len(ctx["good"]) + 1):
            for kind, raw, _, key in inserts.get(i, ()):
                if kind != "fundamentals":
                    stream.append((topic_name(kind), key, raw))
            if i < len(ctx["good"]):
                sym = orjson.loads(ctx["good"][i])["symbol"]
                stream.append((topic_name("bars"), sym.encode(), ctx["good"][i]))
        st_pub = asyncio.run(publish(broker.bootstrap, stream, window=500))
        assert st_pub["retries"] == 0, "offsets would shift; rerun"
        n_good = len(ctx["good"])
        h = worker.wait_for(lambda h: h["bars_applied"] >= n_good and h["pending_timestamps"] == 0, 120)
        assert worker.proc.poll() is None, "the worker must stay up"
        scores, dead = [], []
        asyncio.run(tail(broker.bootstrap, "scores", from_beginning=True, idle_s=2, raw=scores.append))
        asyncio.run(tail(broker.bootstrap, "deadletter", from_beginning=True, idle_s=2, raw=dead.append))
        dead_msg_keys: list = []

        async def keys(msgs):
            dead_msg_keys.extend((m.key, orjson.loads(m.value)["source_topic"]) for m in msgs)
        asyncio.run(read_to_end(broker.bootstrap, topic_name("deadletter"), keys))
        from tests.test_ops_kit import missing_metrics  # the ops kit names only what a real worker exports
        assert missing_metrics(worker.get("/metrics").decode()) == []
    finally:
        worker.stop()
    # every dead letter is keyed by its source topic (the documented key of technic.deadletter)
    assert dead_msg_keys and all(k == src.encode() for k, src in dead_msg_keys)
    got = {}
    for v in scores:
        k = (v["symbol"], v["ts"])
        assert got.get(k, score_view(v)) == score_view(v), f"conflicting copies of {k}"
        got[k] = score_view(v)
    assert got == ctx["clean"]
    dead_keys = {(d["source_topic"], d["offset"]): d for d in dead}
    assert set(dead_keys) == set(expect_dead), (len(dead_keys), len(expect_dead))
    for k, cls in expect_dead.items():
        assert dead_keys[k]["reason_code"] in CLASSES[cls], (cls, dead_keys[k])
    assert h["redelivered"] == n_redelivered
    print(f"\nfuzz (broker): {len(bad)} bad + {n_good} good records; {len(dead)} dead letters, "
          f"{h['redelivered']} redeliveries skipped, {len(got)} scores identical to the clean run")


def _deterministic_examples(strategy, n):
    """``n`` examples of a list strategy, concatenated, with a fixed seed (.example() is random)."""
    out = []

    @settings(max_examples=n, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def grab(x):
        out.append(x)
    grab()
    return [r for xs in out[:n] for r in xs]
