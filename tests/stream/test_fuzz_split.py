"""Property-based bad input in split mode: per-symbol stages over partitions, then the scoring stage.

The same bad-input classes and hypothesis strategies as the one-process fuzz suite
(``tests.stream.test_fuzz``: ``CLASSES``, ``bad_record``), mixed at random positions into the
same clean stream of good bars (12 symbols of the 400-day fixture), now fed to the split
topology: ``P`` = 6 input partitions owned by 3 per-symbol stages (``--member i/3``: partition
``p`` belongs to stage ``p % 3``), whose feature rows and watermarks go through the wire
encoding into one scoring stage. Each record goes to the partition of its Kafka key as the
producer's partitioner (aiokafka's ``DefaultPartitioner``: murmur2 of the key) would route it;
a null key goes to a random partition (here a fixed pseudo-random one, a CRC of the payload).
Partitions progress at different speeds (random chunks per partition, a watermark after each).

Contract checked for every example (as in test_fuzz):

* no stage raises;
* every bad record yields exactly one schema-valid dead letter naming its origin (topic,
  partition, offset) with a ``reason_code`` its class allows - except an exact redelivery,
  which is skipped and counted in the owning stage's ``stats.redelivered``;
* good records yield no dead letter, their feature rows (every time-series feature, not only
  the few the test model reads) are identical to the clean split run's, the scoring stage dead-letters nothing and drops no late
  row, and the scores of the good records are identical (every field but ``emit_time``) to a
  clean split run and to the clean one-process run (the fixture checks those two are equal).

**Control-topic classes** (``control_unknown_model``, ``control_malformed``) go to the scoring
stage, which reads ``technic.control`` as the one-process pipeline does (model promotions / reloads
by command; ``ScoringStage.on_control``): each one dead letter, nothing else changes.

The scoring stage's own input is fuzzed too (``test_scoring_stage_dead_letters_malformed_features_records``):
records of the clean ``technic.features`` stream with a field dropped, of the wrong type or range,
an unknown type, or truncated JSON, each one ``schema`` dead letter that changes nothing.

Level (a) runs in process; level (b) sends a few thousand records through the real broker to 3
per-symbol worker processes and a scoring worker process (static assignment) and checks the
same on the scores and dead-letter topics.
"""

from __future__ import annotations

import asyncio
import os
import time
import zlib

import numpy as np
import orjson
import pytest
from aiokafka.partitioner import murmur2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stream.io.codecs import validate
from stream.stages.symbol import SymbolStage

from .test_fuzz import (CLASSES, CTX, EXAMPLES, N_DAYS, N_DAYS_BROKER, PER_EXAMPLE, _deterministic_examples,
                        ancient_ts, bad_record, check_bad, malformed_ts, prepare, score_view, symbol_key)
from .test_pipeline import FIX, LinearScorer, data  # noqa: F401 (fixture)
from .test_split import scoring, wire

P, MEMBERS = 6, 3
TOTALS = {"bad": 0, "dead": 0, "redelivered": 0, "control": 0, "good": 0, "by_class": {}}


def partition_for(key: bytes | None, raw: bytes) -> int:
    """The input partition a producer sends a record to: murmur2 of the key (aiokafka's and the
    Java client's default partitioner); a null key goes to a random partition (here: by payload CRC)."""
    if key is None:
        return zlib.crc32(raw) % P
    return (murmur2(key) & 0x7FFFFFFF) % P


def interleave(good, inserts) -> list[tuple]:
    """Records in publish order: ``inserts[i]`` (kind, raw, cls, key) before good bar ``i``.
    Each is (kind, raw, cls or None for a good bar, key)."""
    out = []
    for i in range(len(good) + 1):
        out += inserts.get(i, ())
        if i < len(good):
            out.append(("bars", good[i], None, symbol_key(good[i])))
    return out


class SplitRun:
    """3 per-symbol stages over P partitions and one scoring stage, in process."""

    def __init__(self, secs, fund_recs):
        self.stages = [SymbolStage(secs, n_partitions=P) for _ in range(MEMBERS)]
        self.sc = scoring(secs)
        self.off: dict = {}                 # (kind, partition) -> next offset, as the broker assigns them
        self.outs: list = []                # scoring stage outputs
        self.dead: list = []                # per-symbol stage dead letters
        self.per_bad: list = []             # check_bad's (cls, kind, partition, offset, outs, redelivered)
        self.n_control = 0                  # control records (read by the scoring stage)
        self.control_dead = 0               # ... and the scoring stage's dead letters for them
        self.rows: dict = {}                # (symbol, ts) -> feature row record on the wire (less "received")
        self.wire: list = []                # every technic.features record, in the order the scoring stage read them
        for v in fund_recs:
            key = symbol_key(v)
            p = partition_for(key, v)
            assert not self._handle("fundamentals", v, None, key, p, self._offset("fundamentals", p))

    def _offset(self, kind, p) -> int:
        o = self.off.get((kind, p), 0)
        self.off[(kind, p)] = o + 1
        return o

    def _to_scoring(self, outs) -> None:
        for raw in wire(outs):
            self.wire.append(raw)
            v = orjson.loads(raw)
            if v["type"] == "row":
                k = (v.pop("symbol"), v.pop("ts"))
                assert k not in self.rows, f"two feature rows for {k}"
                self.rows[k] = {f: x for f, x in v.items() if f != "received"}
            self.outs += self.sc.on_record(raw, "features", 0, self._offset("features", 0))

    def _handle(self, kind, raw, cls, key, p, off) -> list:
        stage = self.stages[p % MEMBERS]
        before = stage.stats.redelivered
        fn = {"bars": stage.on_bar, "fundamentals": stage.on_fundamental, "alt": stage.on_alt}[kind]
        o = fn(raw, topic=kind, partition=p, offset=off, key=key)
        dead = [x for x in o if x.kind == "deadletter"]
        self.dead += [x.value for x in dead]
        if cls is None:
            assert not dead, dead           # a good record is never dead-lettered
        else:
            self.per_bad.append((cls, kind, p, off, o, stage.stats.redelivered - before))
        self._to_scoring(o)
        return dead

    def run(self, records, seed: int) -> "SplitRun":
        """Route ``records`` to their partitions, then consume the partitions in random chunks."""
        queues: dict[int, list] = {p: [] for p in range(P)}
        for kind, raw, cls, key in records:
            if kind == "control":           # technic.control: the scoring stage reads it
                self.n_control += 1
                off = self._offset("control", 0)
                o = self.sc.on_control(raw, "control", 0, off)
                dead = [x for x in o if x.kind == "deadletter"]
                self.dead += [x.value for x in dead]
                self.control_dead += len(dead)
                if cls is None:
                    assert not dead, dead
                else:
                    self.per_bad.append((cls, kind, 0, off, o, 0))
                continue
            p = partition_for(key, raw)
            queues[p].append((kind, raw, cls, key, self._offset(kind, p)))
        rng = np.random.default_rng(seed)
        pos = {p: 0 for p in range(P)}
        while True:
            live = [p for p in range(P) if pos[p] < len(queues[p])]
            if not live:
                break
            p = live[int(rng.integers(len(live)))]
            chunk = queues[p][pos[p]:pos[p] + int(rng.integers(1, 40))]
            pos[p] += len(chunk)
            for kind, raw, cls, key, off in chunk:
                self._handle(kind, raw, cls, key, p, off)
            self._to_scoring(self.stages[p % MEMBERS].watermarks([p]))
            self.outs += self.sc.poll()
        for i, stage in enumerate(self.stages):   # every worker caught up with its input
            self._to_scoring(stage.watermarks([p for p in range(P) if p % MEMBERS == i], caught_up=True))
        self.outs += self.sc.poll()
        self.closed_by_watermarks = self.sc.stats.timestamps_closed
        self.outs += self.sc.flush()
        return self

    def scores(self) -> dict:
        got = {}
        for o in self.outs:
            if o.kind == "scores":
                k = (o.value["symbol"], o.value["ts"])
                assert k not in got, f"duplicate score {k}"
                got[k] = score_view(o.value)
        return got

    @property
    def redelivered(self) -> int:
        return sum(s.stats.redelivered for s in self.stages)


def check_scoring_clean(r: SplitRun) -> None:
    assert not [o for o in r.outs if o.kind == "deadletter"], "the scoring stage dead-lettered a features record"
    assert sum(r.sc.stats.deadletter.values()) == r.control_dead   # bad commands only, no features record
    assert r.sc.late_rows == 0 and not r.sc.pending


@pytest.fixture(scope="module")
def split_data(data):  # noqa: F811
    ctx = prepare(data, N_DAYS)                      # the clean one-process run: ctx["clean"]
    r = SplitRun(ctx["secs"], ctx["fund"]).run(interleave(ctx["good"], {}), seed=0)
    check_scoring_clean(r)
    assert not r.dead and r.closed_by_watermarks == N_DAYS   # the last one too: complete marks, no grace wait
    assert r.scores() == ctx["clean"]                # split mode == one-process mode, every field
    ctx["clean_rows"], ctx["clean_wire"] = r.rows, r.wire
    assert len({partition_for(symbol_key(v), v) for v in ctx["good"]}) >= 4   # the symbols do spread
    return ctx


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its example at once
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_split_bad_records_dead_lettered_good_scores_unchanged(split_data, data_):
    ctx = split_data
    CTX.update(good=ctx["good"], states=ctx["states"])   # the good stream bad_record draws against
    n = data_.draw(st.integers(*PER_EXAMPLE))
    bad = data_.draw(st.lists(bad_record(), min_size=n, max_size=n))
    seed = data_.draw(st.integers(0, 2**32 - 1))
    inserts: dict = {}
    for i, kind, raw, cls, key in bad:
        inserts.setdefault(i, []).append((kind, raw, cls, key))
    r = SplitRun(ctx["secs"], ctx["fund"]).run(interleave(ctx["good"], inserts), seed)   # never raises
    check_bad(r.per_bad, TOTALS)
    check_scoring_clean(r)
    assert r.rows == ctx["clean_rows"]     # every time-series feature of every good bar, not only the model's
    assert r.scores() == ctx["clean"]
    n_redelivered = sum(1 for *_, red in r.per_bad if red)
    assert n_redelivered == r.redelivered
    assert len(r.dead) + n_redelivered == len(bad)
    for d in r.dead[:: max(1, len(r.dead) // 20)]:
        validate("deadletter", d)
    TOTALS["bad"] += len(bad)
    TOTALS["dead"] += len(r.dead)
    TOTALS["redelivered"] += n_redelivered
    TOTALS["control"] += r.n_control
    TOTALS["good"] += len(ctx["good"])


def test_split_fuzz_volume_and_class_coverage():
    """Runs after the property test (file order): every class exercised (control ones too)."""
    if TOTALS["bad"] == 0:
        pytest.skip("property test not run in this session")
    print(f"\nfuzz (split, in-process): {TOTALS}")
    assert TOTALS["bad"] >= EXAMPLES * PER_EXAMPLE[0]
    assert set(TOTALS["by_class"]) == set(CLASSES) and TOTALS["control"] > 0
    assert TOTALS["dead"] + TOTALS["redelivered"] == TOTALS["bad"]


# ----------------------------------- (a') the scoring stage's own input: malformed technic.features records
I64 = st.integers(-2**63, 2**63 - 1)   # what JSON (orjson) can carry
junk = st.one_of(st.none(), st.booleans(), I64, st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=8), st.lists(I64, max_size=3), st.dictionaries(st.text(max_size=3), I64, max_size=2))
not_str = junk.filter(lambda x: not isinstance(x, str))
not_number = junk.filter(lambda x: x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))))
not_int = junk.filter(lambda x: isinstance(x, bool) or not isinstance(x, int))
bad_ts = st.one_of(not_str, malformed_ts, ancient_ts)


WIRE: list = []   # the clean technic.features stream (kept out of hypothesis' reprs)


@st.composite
def bad_features_record(draw):
    """(position, raw) of one malformed technic.features record: a clean record of the stream (WIRE) with
    one field dropped or given a value of the wrong type or range, an unknown type, or truncated JSON."""
    wire_log = WIRE
    i = draw(st.integers(0, len(wire_log) - 1))
    src = wire_log[i]
    v = orjson.loads(src)
    how = draw(st.sampled_from(["truncate", "type", "drop", "field"]))
    if how == "truncate":
        return i, src[:draw(st.integers(0, len(src) - 1))]
    if how == "type":
        v["type"] = draw(junk.filter(lambda x: x not in ("row", "wm")))
    elif how == "drop":
        v.pop(draw(st.sampled_from(["type", "ts", "symbol", "row"] if v["type"] == "row"
                                   else ["type", "partition", "n_partitions", "wm", "caught_up"])))
    elif v["type"] == "row":
        f = draw(st.sampled_from(["ts", "symbol", "row", "row_len", "row_item", "close", "received"]))
        if f == "ts":
            v["ts"] = draw(bad_ts)
        elif f == "symbol":
            v["symbol"] = draw(st.one_of(not_str, st.just("")))
        elif f == "row":
            v["row"] = draw(junk.filter(lambda x: not isinstance(x, list)))
        elif f == "row_len":
            n = len(v["row"])
            v["row"] = (v["row"] + [1.0] * 3)[:draw(st.integers(0, n + 3).filter(lambda k: k != n))]
        elif f == "row_item":
            v["row"][draw(st.integers(0, len(v["row"]) - 1))] = draw(not_number)
        else:
            v[f] = draw(not_number)
    else:
        f = draw(st.sampled_from(["partition", "n_partitions", "wm", "caught_up"]))
        if f == "partition":
            v["partition"] = draw(st.one_of(not_int, st.integers(-2**40, -1), st.integers(v["n_partitions"], 2**40)))
        elif f == "n_partitions":
            v["n_partitions"] = draw(st.one_of(not_int, st.integers(-5, v["partition"]), st.integers(10_001, 2**63 - 1)))
        elif f == "wm":
            v["wm"] = draw(bad_ts.filter(lambda x: x is not None))
        else:
            v["caught_up"] = draw(junk.filter(lambda x: not isinstance(x, bool)))
    return i, orjson.dumps(v)


FEATURES_TOTALS = {"bad": 0, "dead": 0}


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(st.data())
def test_scoring_stage_dead_letters_malformed_features_records(split_data, data_):
    """A malformed record on technic.features (another producer, another version) is one ``schema``
    dead letter naming its offset and changes nothing: same scores, no crash, no wedged timestamp."""
    ctx = split_data
    wire_log = WIRE[:] = ctx["clean_wire"]
    bad = data_.draw(st.lists(bad_features_record(), min_size=60, max_size=60))
    inserts: dict = {}
    for i, raw in bad:
        inserts.setdefault(i, []).append(raw)
    sc = scoring(ctx["secs"])
    outs, off, n_dead = [], 0, 0
    for i, good in enumerate(wire_log):
        for raw in inserts.get(i, ()):
            o = sc.on_record(raw, "features", 0, off)
            assert [(x.kind, x.value["reason_code"], x.value["offset"]) for x in o] == [("deadletter", "schema", off)]
            validate("deadletter", o[0].value)
            n_dead, off = n_dead + 1, off + 1
        o = sc.on_record(good, "features", 0, off)
        off += 1
        assert not any(x.kind == "deadletter" for x in o), o
        outs += o + (sc.poll() if i % 50 == 0 else [])
    outs += sc.poll() + sc.flush()
    assert sc.late_rows == 0 and sc.n_partitions == P and sorted(sc.wm) == list(range(P))
    got = {(o.value["symbol"], o.value["ts"]): score_view(o.value) for o in outs if o.kind == "scores"}
    assert got == ctx["clean"]
    FEATURES_TOTALS["bad"] += len(bad)
    FEATURES_TOTALS["dead"] += n_dead


def test_features_fuzz_volume():
    if FEATURES_TOTALS["bad"] == 0:
        pytest.skip("property test not run in this session")
    print(f"\nfuzz (scoring stage, technic.features): {FEATURES_TOTALS}")
    assert FEATURES_TOTALS["dead"] == FEATURES_TOTALS["bad"] >= EXAMPLES * 60


# ------------------------------------------------ (b) real broker + split worker processes
# the scoring worker with the tests' linear stand-in scorer (no registry needed): argv = bootstrap port grace secs
_LINEAR_SCORING_LAUNCH = """
import asyncio, sys
from stream.service.app import WorkerSettings
from stream.service.logs import setup_logging
from stream.service.scoring_worker import serve_scoring_worker
from stream.stages.models import ModelSource
from stream.stages.scoring import ScoringConfig, ScoringStage
from technic.data import load_securities, sector_map
from tests.stream.test_pipeline import LinearScorer
boot, port, grace, secs = sys.argv[1:5]
setup_logging(False)
stage = ScoringStage(ModelSource(None, scorer=LinearScorer()), sectors=sector_map(load_securities(secs)),
                     config=ScoringConfig(grace_s=float(grace)))
asyncio.run(serve_scoring_worker(WorkerSettings(bootstrap=boot, web_port=int(port)), stage, checkpoint_s=1.0))
"""


def _linear_topology(boot, work, env):
    """``SplitTopology`` (3 per-symbol CLI workers, ``--member i/3``) whose scoring worker serves LinearScorer."""
    import sys

    from stream.tools.split_run import SplitTopology

    class LinearSplitTopology(SplitTopology):
        def _cmd(self, role, port, member=None):
            if role == "scoring":
                return [sys.executable, "-c", _LINEAR_SCORING_LAUNCH, self.boot, str(port), str(self.grace_s),
                        str(self.securities)]
            return super()._cmd(role, port, member)

    return LinearSplitTopology(boot, work, work, env, MEMBERS, securities=FIX / "securities_400d.csv",
                               checkpoint_s=1.0, grace_s=2.0)


def _origins(records_by_kind: dict, messages) -> dict:
    """(topic kind, partition, offset) -> class (None: good) of every input message read back from
    the broker. Records are matched on (key, value) in publish order per partition; identical
    (key, value) pairs share a partition unless the key is null, and those are all ``wrong_key``."""
    from collections import deque
    todo = {kind: {} for kind in records_by_kind}
    for kind, recs in records_by_kind.items():
        for key, raw, cls in recs:
            todo[kind].setdefault((key, raw), deque()).append(cls)
    out = {}
    for kind, p, off, key, raw in sorted(messages, key=lambda m: (m[0], m[1], m[2])):
        out[(kind, p, off)] = todo[kind][(key, raw)].popleft()
    assert all(not q for d in todo.values() for q in d.values()), "a published record was not read back"
    return out


@pytest.mark.broker
def test_split_fuzz_through_broker_and_workers(broker, data, tmp_path, monkeypatch):  # noqa: F811
    """720 good bars + 2,000 bad records through the real broker, 3 per-symbol workers and the scoring worker."""
    from stream.io.topic_reader import read_to_end
    from stream.io.topics_config import create_topics, topic_name, topic_specs
    from stream.tools.publisher import publish
    from stream.tools.split_run import health
    from stream.tools.tail import tail

    ctx = prepare(data, N_DAYS_BROKER)
    prefix = f"fzs{time.time_ns() % 10**9}."
    monkeypatch.setenv("TECHNIC_TOPIC_PREFIX", prefix)
    create_topics(broker.bootstrap, topic_specs(partitions=P))
    bad = _deterministic_examples(st.lists(bad_record(), min_size=250, max_size=250), 8)   # 2,000 records
    inserts: dict = {}
    for i, kind, raw, cls, key in bad:
        inserts.setdefault(i, []).append((kind, raw, cls, key))
    # the same records in process first: the contract holds there (and the reference counts)
    ref = SplitRun(ctx["secs"], ctx["fund"]).run(interleave(ctx["good"], inserts), seed=0)
    check_bad(ref.per_bad, {"by_class": {}})
    assert ref.scores() == ctx["clean"]

    # reference data first (as the one-process test does): fundamentals, good and bad
    side = [(key, v, None) for v in ctx["fund"] for key in [symbol_key(v)]]
    side += [(key, raw, cls) for i in sorted(inserts) for k, raw, cls, key in inserts[i] if k == "fundamentals"]
    stream = [r for r in interleave(ctx["good"], inserts) if r[0] != "fundamentals"]
    published = {"fundamentals": side, **{k: [(key, raw, cls) for kk, raw, cls, key in stream if kk == k]
                                          for k in ("bars", "alt", "control")}}
    asyncio.run(publish(broker.bootstrap, [(topic_name("fundamentals"), k, v) for k, v, _ in side]))
    env = dict(os.environ, TECHNIC_TOPIC_PREFIX=prefix, TECHNIC_PARTITIONS=str(P),
               PYTHONPATH=os.pathsep.join([str(FIX.parents[1]), os.environ.get("PYTHONPATH", "")]))
    topo = _linear_topology(broker.bootstrap, tmp_path, env)
    t0 = time.time()
    try:
        topo.start()
        st_pub = asyncio.run(publish(broker.bootstrap, [(topic_name(k), key, raw) for k, raw, _, key in stream],
                                     window=500))
        assert st_pub["retries"] == 0, "offsets would shift; rerun"
        n_good = len(ctx["good"])
        deadline = time.time() + 180
        while True:
            sc = topo.status("scoring")
            syms = [topo.status(f"symbol{i}") for i in range(MEMBERS)]
            if sc["bars_applied"] >= n_good and sc["pending_timestamps"] == 0 and all(s["caught_up"] for s in syms):
                break
            assert time.time() < deadline, (sc, syms)
            assert all(p.poll() is None for p in topo.procs.values()), "every worker must stay up"
            time.sleep(0.5)
        scores: list = []
        asyncio.run(tail(broker.bootstrap, "scores", from_beginning=True, idle_s=2, out=lambda s: None,
                         raw=scores.append))
        dead: list = []
        inputs: list = []

        async def collect_dead(msgs):
            dead.extend((m.key, orjson.loads(m.value)) for m in msgs)

        async def collect_inputs(msgs):
            inputs.extend((m.topic.rsplit(".", 1)[-1], m.partition, m.offset, m.key, m.value) for m in msgs)
        asyncio.run(read_to_end(broker.bootstrap, topic_name("deadletter"), collect_dead))
        for k in ("bars", "fundamentals", "alt", "control"):
            asyncio.run(read_to_end(broker.bootstrap, topic_name(k), collect_inputs))
        assert all(p.poll() is None for p in topo.procs.values()), "every worker must stay up"
    finally:
        topo.stop()
    seconds = time.time() - t0
    origins = _origins(published, inputs)
    # scores: every good bar's, once, identical to the clean one-process run (and so to the clean split run)
    got = {}
    for v in scores:
        k = (v["symbol"], v["ts"])
        assert k not in got, f"score {k} emitted twice (no worker restarted)"
        got[k] = score_view(v)
    assert got == ctx["clean"]
    n_control = sum(1 for (k, _, _), c in origins.items() if k == "control" and c is not None)
    assert sum(sc["deadletter"].values()) == n_control > 0 and sc["late_rows"] == 0   # only bad commands
    # dead letters: one per bad record (not exact redeliveries), naming its origin, keyed by topic
    expect = {o: cls for o, cls in origins.items() if cls is not None and CLASSES[cls] is not None}
    seen = {}
    for key, d in dead:
        validate("deadletter", d)
        assert key == d["source_topic"].encode()
        o = (d["source_topic"].rsplit(".", 1)[-1], d["partition"], d["offset"])
        assert o not in seen, f"two dead letters for {o}"
        assert o in expect, (o, origins.get(o), d)
        assert d["reason_code"] in CLASSES[expect[o]], (expect[o], d)
        seen[o] = d
    assert set(seen) == set(expect), sorted(set(expect) - set(seen))[:5]
    n_redelivered = sum(1 for cls in origins.values() if cls == "redelivery")
    assert sum(s["redelivered"] for s in syms) == n_redelivered == ref.redelivered
    assert len(dead) == len(ref.dead)
    by_part = {p: sum(1 for (k, q, _), c in origins.items() if k == "bars" and q == p and c is not None)
               for p in range(P)}
    print(f"\nfuzz (split, broker): {len(bad)} bad + {n_good} good records over {P} partitions "
          f"(bad bars per partition {by_part}); {len(dead)} dead letters, {n_redelivered} redeliveries skipped, "
          f"{n_control} of them bad control commands (scoring worker), "
          f"{len(got)} scores identical to the clean run; workers ran {seconds:.0f} s")
