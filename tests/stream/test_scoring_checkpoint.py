"""Scoring-stage checkpoints in process: snapshot the scoring stage midway, lose it, restore a fresh
one and feed the features log from the snapshot's offset -> every score equals the uninterrupted
run's (all fields but emit_time) and the batch path's, exactly; re-emitted scores are identical."""

import numpy as np
import orjson
import pytest

from stream.io.codecs import encode
from stream.stages.models import ModelSource
from stream.stages.scoring import ScoringConfig, ScoringStage
from stream.stages.scoring_checkpoint import decode
from stream.stages.checkpoint import decode_snapshot
from stream.stages.symbol import SymbolStage

from .test_pipeline import LinearScorer, batch_scores, data  # noqa: F401 (fixture)
from .test_split import P, bars_by_partition, feed_side, scores_of, wire


class SeqScorer(LinearScorer):
    """A scorer with a sequence window: its scores read each symbol's normalized history ring."""

    def __init__(self, version="test-seq"):
        super().__init__(version)
        self.seq_len = 4

    def predict(self, X, history=None, top_k=5, groups=None):
        res = super().predict(X, history, top_k, groups)
        bump = np.nansum(history.astype(np.float64), axis=(1, 2))
        res["scores"] = {h: v + 1e-3 * bump for h, v in res["scores"].items()}
        return res


def features_log(bars, fund, secs):
    """The technic.features topic as the per-symbol stage writes it: partitions interleaved,
    watermarks after every chunk (a fixed random schedule)."""
    w = SymbolStage(secs, n_partitions=P)
    feed_side(w, fund, set(range(P)))
    per = bars_by_partition(bars)
    log, pos = [], {p: 0 for p in range(P)}
    rng = np.random.default_rng(1)
    while any(pos[p] < len(per[p]) for p in range(P)):
        p = int(rng.integers(P))
        chunk = per[p][pos[p]:pos[p] + int(rng.integers(1, 40))]
        recs = []
        for i, v in enumerate(chunk):
            recs += w.on_bar(v, partition=p, offset=pos[p] + i)
        pos[p] += len(chunk)
        log += wire(recs + w.watermarks([p]))
    return log


def stage(secs, scorer):
    return ScoringStage(ModelSource(None, scorer=scorer), sectors=secs, config=ScoringConfig(grace_s=1e9, stall_s=1e9))


def consume(sc, log, start, stop, batch=25):
    """Feed log[start:stop] in batches, polling after each (as the worker does)."""
    outs = []
    for b in range(start, stop, batch):
        for raw in log[b:min(b + batch, stop)]:
            outs += sc.on_record(raw)
        outs += sc.poll()
    return outs


def values(outs):
    """Every score record's value but its emit_time, by key (a list: copies kept)."""
    got: dict = {}
    for o in outs:
        if o.kind == "scores":
            v = {k: x for k, x in o.value.items() if k != "emit_time"}
            got.setdefault(v["key"], []).append(v)
    return got


@pytest.fixture(scope="module")
def log(data):
    return features_log(*data)


@pytest.mark.parametrize("scorer_cls", [LinearScorer, SeqScorer])
@pytest.mark.parametrize("frac", [0.3, 0.7])
def test_restored_scoring_stage_scores_like_the_uninterrupted_one(data, log, scorer_cls, frac):
    bars, fund, secs = data
    live = stage(secs, scorer_cls())
    ref = consume(live, log, 0, len(log)) + live.flush()
    cut = int(len(log) * frac) // 25 * 25                   # a batch boundary: the worker's consistent point
    a = stage(secs, scorer_cls())
    outs = consume(a, log, 0, cut)
    assert a.pending and a.last_closed > 0                  # open timestamps and a market state to carry over
    blob = encode(a.snapshot({0: cut}).value)
    assert decode_snapshot(blob) is None                    # not mistaken for a per-symbol partition snapshot
    outs += consume(a, log, cut, cut + 300)                 # emitted, then the worker dies before its next snapshot
    b = stage(secs, scorer_cls())
    offsets = b.restore(decode(blob))
    assert offsets == {0: cut}
    assert list(b.engine.slots) == list(a.engine.slots)
    outs += consume(b, log, offsets[0], len(log)) + b.flush()
    got, want = values(outs), values(ref)
    assert set(got) == set(want)
    for k, copies in got.items():                           # re-emissions identical, equal to the uninterrupted run
        assert all(c == want[k][0] for c in copies), k
    assert sum(len(c) - 1 for c in got.values()) > 0        # the 300 records after the snapshot were re-scored
    if scorer_cls is LinearScorer:
        expect = batch_scores(bars, fund, secs)
        s = scores_of(outs)
        assert set(s) == set(expect) and max(abs(s[k] - expect[k]) for k in expect) == 0.0
    else:
        assert b.ring.cnt.any()
        np.testing.assert_array_equal(b.ring.hist[:len(b.engine.slots)], live.ring.hist[:len(b.engine.slots)])
    for s in live.engine.slots:                             # the market state ends bit-identical
        assert b.engine.get_state(s) == live.engine.get_state(s)


def test_snapshot_round_trips_through_json_and_is_idempotent(data, log):
    _, _, secs = data
    a = stage(secs, SeqScorer())
    consume(a, log, 0, len(log) // 2)
    snap = a.snapshot({0: len(log) // 2}).value
    b = stage(secs, SeqScorer())
    b.restore(decode(encode(snap)))
    again = b.snapshot({0: len(log) // 2}).value
    assert orjson.loads(encode(again)) == orjson.loads(encode(snap))


def test_model_version_change_between_snapshot_and_restore(data, log):
    bars, fund, secs = data
    a = stage(secs, LinearScorer("v1"))
    cut = len(log) // 2 // 25 * 25
    consume(a, log, 0, cut)
    blob = encode(a.snapshot({0: cut}).value)
    b = stage(secs, LinearScorer("v2", sign=-1.0))
    b.restore(decode(blob))
    outs = consume(b, log, cut, len(log)) + b.flush()
    alerts = [o.value for o in outs if o.kind == "alerts" and o.value["type"] == "model_reload"]
    assert len(alerts) == 1 and "v1" in alerts[0]["message"] and "v2" in alerts[0]["message"]
    got = values(outs)
    assert {v[0]["model_version"] for v in got.values()} == {"v2"}
    expect = batch_scores(bars, fund, secs, LinearScorer("v2", sign=-1.0))   # the market state is model-free
    s = scores_of(outs)
    assert s and max(abs(s[k] - expect[k]) for k in s) == 0.0


def test_snapshot_of_another_format_or_into_a_used_stage_is_refused(data, log):
    _, _, secs = data
    a = stage(secs, LinearScorer())
    consume(a, log, 0, 500)
    snap = orjson.loads(encode(a.snapshot({0: 500}).value))
    snap["format"] = 99
    with pytest.raises(ValueError, match="format"):
        stage(secs, LinearScorer()).restore(snap)
    b = stage(secs, LinearScorer())
    consume(b, log, 0, 10)
    with pytest.raises(ValueError, match="fresh"):
        b.restore(decode(encode(a.snapshot({0: 500}).value)))
