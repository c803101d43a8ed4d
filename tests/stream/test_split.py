"""Split mode in process, no broker: per-symbol stages over partitions -> technic.features records ->
scoring stage, against the batch path; checkpoints restore exactly; bad input is dead-lettered."""

import zlib

import numpy as np
import orjson

from stream.io.codecs import encode
from technic.features.incremental import NAT

from stream.stages.checkpoint import decode_snapshot, restore, snapshot
from stream.stages.models import ModelSource
from stream.stages.scoring import ScoringConfig, ScoringStage
from stream.stages.symbol import SymbolStage
from stream.tools.publisher import bar_records, fundamental_records

from .test_pipeline import LinearScorer, batch_scores, data  # noqa: F401 (fixture)

P = 3


def part(sym: str) -> int:
    return zlib.crc32(sym.encode()) % P


def feed_side(stage, fund, parts):
    for i, (_, k, v) in enumerate(fundamental_records(fund)):
        if part(k.decode()) in parts:
            stage.on_fundamental(v, partition=part(k.decode()), offset=i)


def bars_by_partition(bars):
    out = {p: [] for p in range(P)}
    for _, k, v in bar_records(bars):
        out[part(k.decode())].append(v)
    return out


def scoring(secs, **kw):
    return ScoringStage(ModelSource(None, scorer=LinearScorer()), sectors=secs,
                        config=ScoringConfig(grace_s=1e9, stall_s=1e9, **kw))


def wire(outs):
    """Outputs of the per-symbol stage as the scoring stage reads them from the broker."""
    return [encode(o.value) for o in outs if o.kind == "features"]


def scores_of(outs):
    return {(o.value["symbol"], o.value["ts"]): o.value["scores"]["5d"] for o in outs if o.kind == "scores"}


def test_split_scores_equal_batch_with_interleaved_partitions(data):
    bars, fund, secs = data
    workers = [SymbolStage(secs, n_partitions=P), SymbolStage(secs, n_partitions=P)]
    owned = [{0, 2}, {1}]
    for w, ps in zip(workers, owned):
        feed_side(w, fund, ps)
    per = bars_by_partition(bars)
    sc = scoring(secs)
    outs, pos = [], {p: 0 for p in range(P)}
    rng = np.random.default_rng(0)
    while any(pos[p] < len(per[p]) for p in range(P)):   # partitions progress at different speeds
        p = int(rng.integers(P))
        w = workers[0] if p in owned[0] else workers[1]
        chunk = per[p][pos[p]:pos[p] + int(rng.integers(1, 40))]
        recs = []
        for i, v in enumerate(chunk):
            recs += w.on_bar(v, partition=p, offset=pos[p] + i)
        pos[p] += len(chunk)
        recs += w.watermarks([p])
        for raw in wire(recs):
            outs += sc.on_record(raw)
        outs += sc.poll()
    closed_by_watermarks = sc.stats.timestamps_closed
    outs += sc.flush()
    got, expect = scores_of(outs), batch_scores(bars, fund, secs)
    assert len(got) == len(expect) == len(bars)
    assert max(abs(got[k] - expect[k]) for k in expect) == 0.0
    # every timestamp closed by the partitions' marks, the last one too (complete marks: no grace wait)
    assert closed_by_watermarks == bars["date"].nunique()
    assert not sc.stats.deadletter and sc.late_rows == 0
    st = sc.status()   # every close timed: wall and CPU percentiles in the worker's /health
    assert st["closes_timed"] == len(sc.close_ms) == sc.stats.timestamps_closed
    for name in ("close_wall_ms", "close_cpu_ms"):
        a = np.asarray(sc.close_ms)[:, int(name == "close_cpu_ms")]
        assert st[name] == {"p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2),
                            "max": round(float(a.max()), 2)}
        assert 0 < st[name]["p50"] <= st[name]["p99"] <= st[name]["max"]
    assert scoring(secs).status()["closes_timed"] == 0


def test_snapshot_restore_and_replay_after_it_is_exact(data):
    bars, fund, secs = data
    per = bars_by_partition(bars)
    a = SymbolStage(secs, n_partitions=P)
    feed_side(a, fund, set(range(P)))
    n_fund = len(list(fundamental_records(fund)))
    sc = scoring(secs)
    outs = []
    cut = {p: len(per[p]) // 2 for p in range(P)}
    for p in range(P):
        for i, v in enumerate(per[p][:cut[p]]):
            for raw in wire(a.on_bar(v, partition=p, offset=i)):
                outs += sc.on_record(raw)
    snaps = [encode(snapshot(a, p, {"bars": cut[p], "fundamentals": n_fund, "alt": 0}).value) for p in range(P)]
    # a few more bars are processed and emitted, then the worker dies: its state is lost
    for p in range(P):
        for i, v in enumerate(per[p][cut[p]:cut[p] + 5]):
            for raw in wire(a.on_bar(v, partition=p, offset=cut[p] + i)):
                outs += sc.on_record(raw)
    b = SymbolStage(secs, n_partitions=P)
    offsets = {p: restore(b, decode_snapshot(s))["bars"] for p, s in enumerate(snaps)}
    assert offsets == cut
    for p in range(P):
        assert b.symbols_of(p) == a.symbols_of(p)
        for s in b.symbols_of(p):
            if s in b.engine.slots and a.admission.seen_seq.get(s) is not None:
                assert b.admission.seen_seq[s] <= a.admission.seen_seq[s]
        b.on_bar(per[p][cut[p] - 1], partition=p)            # a redelivery from before the snapshot: skipped
        for i, v in enumerate(per[p][cut[p]:]):               # replay from the snapshot's offsets
            for raw in wire(b.on_bar(v, partition=p, offset=cut[p] + i)):
                outs += sc.on_record(raw)
    assert b.stats.redelivered == P and not b.stats.deadletter
    outs += sc.flush()
    got, expect = scores_of(outs), batch_scores(bars, fund, secs)
    assert set(got) == set(expect)
    assert max(abs(got[k] - expect[k]) for k in expect) == 0.0


def test_state_bytes_round_trip_through_a_snapshot(data):
    bars, fund, secs = data
    a = SymbolStage(secs, n_partitions=1)
    for v in bars_by_partition(bars)[0][:200]:
        a.on_bar(v, partition=0)
    b = SymbolStage(secs, n_partitions=1)
    restore(b, decode_snapshot(encode(snapshot(a, 0, {"bars": 200}).value)))
    for s in a.symbols_of(0):
        assert b.engine.get_state(s) == a.engine.get_state(s)


def test_bad_input_is_dead_lettered_not_fatal(data):
    bars, fund, secs = data
    st = SymbolStage(secs, n_partitions=1)
    out = st.on_bar(b"{not json", partition=0, offset=7)
    assert [o.kind for o in out] == ["deadletter"] and out[0].value["offset"] == 7
    _, k, v = next(iter(bar_records(bars)))
    assert st.on_bar(v, partition=0, key=b"OTHER")[0].value["reason_code"] == "key_mismatch"
    assert st.on_fundamental(b"[]", partition=0)[0].kind == "deadletter"
    sc = scoring(secs)
    for raw in (b"garbage", orjson.dumps({"type": "row", "ts": "2020-01-02"}), orjson.dumps({"type": "x"}),
                orjson.dumps({"type": "row", "ts": "2020-01-02", "symbol": "A", "row": [1.0, 2.0]})):
        assert [o.kind for o in sc.on_record(raw)] == ["deadletter"]
    assert sc.stats.deadletter["schema"] == 4 and not sc.pending


def test_timestamp_waits_for_every_partition_then_grace_or_stall(data):
    bars, fund, secs = data
    t = [0.0]
    sc = ScoringStage(ModelSource(None, scorer=LinearScorer()), sectors=secs,
                      config=ScoringConfig(grace_s=2.0, stall_s=30.0), clock=lambda: t[0])
    per = bars_by_partition(bars[bars["date"] <= bars["date"].unique()[1]])
    stages = {p: SymbolStage(secs, n_partitions=P) for p in range(P)}
    first = min(bars["date"]).strftime("%Y-%m-%d")
    for p in (0, 1):     # partition 2 has not reported yet
        for v in per[p]:
            for raw in wire(stages[p].on_bar(v, partition=p) + stages[p].watermarks([p], caught_up=True)):
                sc.on_record(raw)
    t[0] = 10.0
    assert sc.poll() == []                  # not every partition caught up: no grace, wait
    for v in per[2][:1]:
        for raw in wire(stages[2].on_bar(v, partition=2) + stages[2].watermarks([2], caught_up=False)):
            sc.on_record(raw)
    t[0] = 20.0
    assert sc.poll() == []
    t[0] = 60.0                             # no progress for longer than stall_s: scored, with an alert
    outs = sc.poll()
    kinds = [o.value["type"] for o in outs if o.kind == "alerts"]
    assert "partition_stalled" in kinds
    assert {o.value["ts"] for o in outs if o.kind == "scores"} >= {first}


def test_malformed_features_records_are_dead_lettered_before_they_change_anything(data):
    """They used to crash the scoring worker (a non-string ts: AttributeError, on every restart too) or be
    taken: a watermark claiming 10**9 partitions held every timestamp open until the stall rule, a
    string close or received counted a row it then refused, caught_up "no" read as True."""
    bars, _, secs = data
    sc = scoring(secs)
    st = SymbolStage(secs, n_partitions=1)
    good = [orjson.loads(r) for r in wire(st.on_bar(next(iter(bar_records(bars)))[2], partition=0)
                                          + st.watermarks([0]))]
    row, wm = good
    bad = [dict(row, ts=0), dict(row, ts=None), dict(row, ts="1500-01-01"), dict(row, symbol=7),
           dict(row, close="1.5"), dict(row, received="x"), dict(row, row=[True] * len(row["row"])),
           dict(row, row=["1.0"] * len(row["row"])), dict(wm, n_partitions=10**9), dict(wm, partition=1),
           dict(wm, partition=-1), dict(wm, partition=0.0), dict(wm, caught_up="no"), dict(wm, wm=5),
           dict(wm, complete=5), dict(wm, complete="2999-01-01"), dict(wm, wm=None, complete=wm["wm"])]
    for i, v in enumerate(bad):
        (d,) = sc.on_record(orjson.dumps(v), "features", 0, i)
        assert d.kind == "deadletter" and d.value["reason_code"] == "schema" and d.value["offset"] == i, v
    assert sc.n_partitions == 0 and not sc.wm and not sc.caught_up and not sc.pending and sc.stats.bars_in == 0
    for v in good:
        assert sc.on_record(orjson.dumps(v)) == []
    assert sc.n_partitions == 1 and list(sc.pending) and sc.stats.bars_in == 1


def _day(bars, i):
    return bars[bars["date"] == bars["date"].unique()[i]]


def _records_by_day(bars, n_days, order=None):
    """(key, value) bar records of the first ``n_days`` days, numbered once (seq per symbol), by day."""
    days = bars[bars["date"].isin(bars["date"].unique()[:n_days])]
    out: dict = {}
    for _, k, v in bar_records(days):
        out.setdefault(orjson.loads(v)["ts"], []).append((k, v))
    return [out[t] for t in sorted(out)]


def test_a_partition_marks_a_timestamp_complete_once_its_previous_symbols_delivered(data):
    """Timestamp t closes as soon as every partition's symbols of the previous timestamp delivered t, without
    a bar of a later timestamp (live bars: one bar interval later) and without the grace period."""
    bars, fund, secs = data
    stages = {p: SymbolStage(secs, n_partitions=P) for p in range(P)}
    sc = scoring(secs)
    outs = []
    for i, recs in enumerate(_records_by_day(bars, 4)):
        for p in range(P):
            for k, v in recs:
                if part(k.decode()) == p:
                    for raw in wire(stages[p].on_bar(v, partition=p, key=k) + stages[p].watermarks([p])):
                        outs += sc.on_record(raw)
                    outs += sc.poll()
        ts = orjson.loads(recs[0][1])["ts"]
        if i < 2:   # the first timestamps: no previous one seen whole yet (the first closes with day 1's bars)
            assert ts not in {o.value["ts"] for o in outs if o.kind == "scores"} or i == 0
        else:       # closed by the marks, with every symbol of the day
            assert sum(o.value["ts"] == ts for o in outs if o.kind == "scores") == len(recs)
    assert sc.stats.timestamps_closed == 4 and not sc.stats.deadletter   # the last one too: no grace wait


def test_a_row_after_its_timestamp_closed_is_dead_lettered_unless_it_is_a_replay(data):
    """A symbol absent from its partition's previous timestamp (new listing, back from a gap) whose bar comes
    after the mark: dead-lettered (out_of_order), not silently dropped; a replayed row of a scored symbol
    (a restarted per-symbol worker) is dropped and counted."""
    bars, fund, secs = data
    syms = sorted(bars["symbol"].unique())
    st = SymbolStage(secs, n_partitions=1)
    sc = scoring(secs)
    outs, rows_d2 = [], []
    late = syms[-1].encode()
    days = _records_by_day(bars, 3)
    days[1] = [(k, v) for k, v in days[1] if k != late]          # `late` misses day 1: not expected on day 2
    for i, recs in enumerate(days):
        out = []
        for k, v in sorted(recs, key=lambda kv: kv[0] == late):   # `late` comes last
            o = st.on_bar(v, partition=0, key=k)
            out += o + st.watermarks([0])
            if i == 2:
                rows_d2 += o
        for raw in wire(out):
            outs += sc.on_record(raw, "features", 0, 99)
            outs += sc.poll()
    ts2 = orjson.loads(days[2][0][1])["ts"]
    scored = {o.value["symbol"] for o in outs if o.kind == "scores" and o.value["ts"] == ts2}
    assert scored and late.decode() not in scored                   # closed before `late` arrived
    assert scored == {k.decode() for k, _ in days[2]} - {late.decode()}
    dead = [o.value for o in outs if o.kind == "deadletter"]
    assert len(dead) == 1 and dead[0]["reason_code"] == "out_of_order" and late.decode() in dead[0]["reason"]
    assert sc.late_rows == 0
    replay = [r for r in wire(rows_d2) if orjson.loads(r)["symbol"] != late.decode()][:3]
    for raw in replay:                                                     # already scored: not an error
        assert sc.on_record(raw) == []
    assert sc.late_rows == 3 and sc.stats.deadletter == {"out_of_order": 1}


def test_no_complete_mark_right_after_a_restore(data):
    """The first timestamp after a restore may have begun before the snapshot: its symbols are not known
    whole, so the partition marks nothing complete until a timestamp it saw from its start has passed."""
    bars, fund, secs = data
    a = SymbolStage(secs, n_partitions=1)
    days = _records_by_day(bars, 5)
    recs = [kv for d in days[:3] for kv in d]
    half = len(recs) - len(days[2]) // 2
    for k, v in recs[:half]:
        a.on_bar(v, partition=0, key=k)
    assert a.complete(0) == NAT                          # day 2 only half delivered
    b = SymbolStage(secs, n_partitions=1)
    restore(b, decode_snapshot(encode(snapshot(a, 0, {"bars": half}).value)))
    for k, v in recs[half:]:
        b.on_bar(v, partition=0, key=k)
        a.on_bar(v, partition=0, key=k)
    assert a.complete(0) != NAT and b.complete(0) == NAT   # b saw day 2 only in part
    for k, v in days[3]:
        b.on_bar(v, partition=0, key=k)
    assert b.complete(0) == NAT                          # its previous timestamp (day 2) was not seen whole
    for k, v in days[4]:
        b.on_bar(v, partition=0, key=k)
    assert b.complete(0) != NAT                          # day 3 was: day 4 is complete


def test_a_dead_workers_last_caught_up_does_not_close_by_grace(data):
    """A per-symbol worker reported "caught up", then died (SIGKILL) while the others went on: its stale flag
    must not let the grace rule close timestamps without its partition's rows (they come after its restart)."""
    bars, fund, secs = data
    t = [0.0]
    sc = ScoringStage(ModelSource(None, scorer=LinearScorer()), sectors=secs,
                      config=ScoringConfig(grace_s=2.0, stall_s=60.0, alive_s=1.0), clock=lambda: t[0])
    days = _records_by_day(bars, 3)
    stages = {p: SymbolStage(secs, n_partitions=P) for p in range(P)}
    for i, recs in enumerate(days):
        for p in range(P):
            if i == 2 and p == 0:
                continue                    # partition 0's worker died after day 1 (caught up then)
            outs = [o for k, v in recs if part(k.decode()) == p for o in stages[p].on_bar(v, partition=p, key=k)]
            for raw in wire(outs + stages[p].watermarks([p], caught_up=True)):
                sc.on_record(raw)
        sc.poll()
    day2 = orjson.loads(days[2][0][1])["ts"]
    t[0] = 0.5
    for p in (1, 2):                        # the live ones keep sending heartbeats
        for raw in wire(stages[p].watermarks([p], caught_up=True)):
            sc.on_record(raw)
    t[0] = 2.5                              # quiet for 2.5 s: partition 0's flag is 2.5 s old
    for p in (1, 2):
        for raw in wire(stages[p].watermarks([p], caught_up=True)):
            sc.on_record(raw)
    outs = sc.poll()
    assert not [o for o in outs if o.kind == "scores" and o.value["ts"] == day2]
    t[0] = 3.0                              # partition 0's worker is back, replays day 2, caught up again
    for raw in wire([o for k, v in days[2] if part(k.decode()) == 0 for o in stages[0].on_bar(v, partition=0, key=k)]
                    + stages[0].watermarks([0], caught_up=True)):
        sc.on_record(raw)
    outs = sc.poll()
    assert sum(o.value["ts"] == day2 for o in outs if o.kind == "scores") == len(days[2])


def test_a_fetched_batch_applied_a_timestamp_at_a_time_equals_one_call_per_bar(data):
    """``on_bars`` (a worker's fetched batch: several partitions, several timestamps, rejected records
    among them) gives the rows, dead letters, watermarks and state of one ``on_bar`` call per record."""
    bars, fund, secs = data
    recs = [(v, "bars", part(k.decode()), i, 1.0, k) for i, (_, k, v) in enumerate(bar_records(bars))]
    first = orjson.loads(recs[0][0])
    junk = [(b"{not json", "bars", 0, -1, 1.0, b"X"),
            (recs[0][0], "bars", recs[0][2], -2, 1.0, recs[0][5]),                       # exact redelivery
            (encode({**first, "seq": 10**6}), "bars", recs[0][2], -3, 1.0, recs[0][5]),   # duplicate timestamp
            (recs[1][0], "bars", recs[1][2], -4, 1.0, b"wrong-key")]
    stream = recs[:40] + junk + recs[40:]
    one, batched = SymbolStage(secs, n_partitions=P), SymbolStage(secs, n_partitions=P)
    for w in (one, batched):
        feed_side(w, fund, set(range(P)))
    out_one, out_batched = [], []
    rng = np.random.default_rng(0)
    i = 0
    while i < len(stream):
        n = int(rng.integers(1, 120))
        chunk = stream[i:i + n]
        for raw, topic, p, off, recv, key in chunk:
            out_one += one.on_bar(raw, topic, p, off, recv, key=key)
        out_one += one.watermarks(range(P))
        out_batched += batched.on_bars(chunk) + batched.watermarks(range(P))
        i += n

    def by_kind(outs, kind):   # a dead letter's wall-clock field left out
        return sorted(encode({k: v for k, v in o.value.items() if k != "received_at"}) for o in outs if o.kind == kind)

    for kind in ("features", "deadletter"):
        assert by_kind(out_one, kind) == by_kind(out_batched, kind)
    assert len(by_kind(out_one, "deadletter")) == 3   # the redelivery is skipped, not dead-lettered
    assert [encode(o.value) for o in out_one if o.value.get("type") == "wm"] == \
        [encode(o.value) for o in out_batched if o.value.get("type") == "wm"]
    assert one.stats.as_dict() == batched.stats.as_dict()
    for s in one.engine.slots:
        assert one.engine.get_state(s) == batched.engine.get_state(s)
