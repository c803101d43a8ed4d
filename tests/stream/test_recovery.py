"""Fault recovery through the real broker and a real worker process: exact results.

Each scenario replays the 400-day fixture (12 symbols, 4,873 bars) at a fixed
rate, injects one fault mid-replay, and then checks the scores topic against
an uninterrupted in-process run of the same pipeline (which
``test_pipeline.test_stream_scores_equal_batch`` ties to the batch path):

* every expected (symbol, ts) key is present, none unexpected;
* copies of a key (re-emissions after a restart) are identical - consumers
  de-duplicate by key - and the distinct scores equal the reference exactly;
* redelivered bars are skipped and counted (``/health``: ``redelivered``); after a restart the
  direct ingest resumes exactly where the catch-up stopped, so nothing is consumed twice
  (``offsets_skipped`` is 0).

Faults: SIGKILL of the worker (then a graceful broker restart: noida-db's group
coordinator wedges after a member crash, docs/broker.md), SIGTERM of the worker,
a forced redelivery (re-publishing an already processed range), and a graceful
broker restart on the same data dir (worker and publisher reconnect by
themselves). The worker runs the default direct ingest: its catch-up handles
everything up to the end offsets and the live consumer seeks right after them.
With ``--ingest faust`` the group consumer resumes from its committed offsets
instead, and Faust's restart offset bugs (faust-streaming #48, #606: 1-2 records
per partition replayed or skipped) are absorbed by the ``OffsetLedger``, which
skips and counts re-delivered offsets (unit test:
``test_admission.test_offset_ledger_skips_offsets_replayed_after_a_restart``).

The worker scores with the tests' linear stand-in (``LinearScorer``) so the
module needs no trained model. Each scenario owns a fresh topic prefix and the
module owns its embedded broker (it is restarted here, so it is not the
session one); with ``TECHNIC_BOOTSTRAP`` set the module is skipped (a real
cluster cannot be restarted from a test).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import orjson
import pytest

from bench.soak import WorkerProc
from stream.io.broker import EmbeddedBroker, resolve_bootstrap
from stream.tools.publisher import bar_records, fundamental_records, publish
from stream.tools.tail import tail
from stream.io.topics_config import create_topics, topic_specs

from .test_fuzz import score_view
from .test_pipeline import FIX, data, run_stream  # noqa: F401 (fixture)

pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(bool(resolve_bootstrap()), reason="restarts its own embedded broker")]
RATE = 1500.0  # bars/s: the replay takes ~3 s, faults land mid-replay


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory):
    b = EmbeddedBroker(tmp_path_factory.mktemp("recovery-broker")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def reference(data):  # noqa: F811
    bars, fund, secs = data
    recs = list(bar_records(bars))
    _, outs = run_stream(recs, fund, secs)
    ref = {(o.value["symbol"], o.value["ts"]): score_view(o.value) for o in outs if o.kind == "scores"}
    assert len(ref) == len(recs)
    return ref


class Scenario:
    def __init__(self, broker, data, tmp_path, monkeypatch):  # noqa: F811
        self.broker, self.tmp = broker, tmp_path
        self.prefix = f"rc{time.time_ns() % 10**9}."
        monkeypatch.setenv("TECHNIC_TOPIC_PREFIX", self.prefix)
        bars, fund, _ = data
        self.bars = list(bar_records(bars))
        create_topics(broker.bootstrap, topic_specs())
        asyncio.run(publish(broker.bootstrap, list(fundamental_records(fund))))
        self.worker = WorkerProc(broker.bootstrap, self.prefix, tmp_path, grace=2.0,
                                 securities=FIX / "securities_400d.csv").start()
        self.pub_stats: dict = {}
        self.pub_error: list = []

    def publish_in_background(self, records, rate=RATE) -> threading.Thread:
        def go():
            try:
                self.pub_stats.update(asyncio.run(publish(self.broker.bootstrap, records, rate=rate,
                                                          window=max(1, int(rate / 20)))))
            except Exception as e:  # surfaced by the test
                self.pub_error.append(e)
        th = threading.Thread(target=go, daemon=True)
        th.start()
        return th

    def wait_applied(self, n, timeout=60):
        return self.worker.wait_for(lambda h: h["bars_applied"] >= n, timeout, poll=0.1)

    def scores(self, n_expected, timeout=120) -> list[dict]:
        deadline = time.time() + timeout
        while True:
            got: list[dict] = []
            asyncio.run(tail(self.broker.bootstrap, "scores", from_beginning=True, idle_s=2, raw=got.append))
            if len({(v["symbol"], v["ts"]) for v in got}) >= n_expected or time.time() > deadline:
                return got
            time.sleep(1)

    def check(self, reference) -> dict:
        got = self.scores(len(reference))
        distinct, dup = {}, 0
        for v in got:
            k = (v["symbol"], v["ts"])
            if k in distinct:
                dup += 1
                assert distinct[k] == score_view(v), f"conflicting copies of {k}"
            distinct[k] = score_view(v)
        missing = set(reference) - set(distinct)
        assert not missing, f"{len(missing)} missing keys, e.g. {sorted(missing)[:3]}"
        assert set(distinct) == set(reference)
        assert distinct == reference  # exact, every field but emit_time
        assert not self.pub_error, self.pub_error
        return {"records": len(got), "distinct": len(distinct), "re_emitted_copies": dup}

    def close(self):
        self.worker.stop()


@pytest.fixture
def scenario(own_broker, data, tmp_path, monkeypatch):  # noqa: F811
    s = Scenario(own_broker, data, tmp_path, monkeypatch)
    yield s
    s.close()


def test_worker_sigkill_mid_replay_then_restart(scenario, own_broker, reference):
    s = scenario
    th = s.publish_in_background(s.bars)
    s.wait_applied(1500)
    assert s.worker.kill() == -9
    th.join(60)
    # noida-db's group coordinator wedges after a member crash (docs/broker.md): a new member of
    # the group gets no assignment until the broker restarts, so restart it gracefully (same data dir)
    own_broker.restart()
    s.worker.start()
    h = s.worker.wait_for(lambda h: h["bars_applied"] >= len(s.bars), 60)
    rep = s.check(reference)
    # the new process rebuilt its state by catch-up: all bars applied once, nothing dead-lettered
    assert h["bars_applied"] == len(s.bars) and not h["deadletter"], h
    assert h["offsets_skipped"] == 0, h
    print(f"\nSIGKILL: {rep}; after restart offsets_skipped={h['offsets_skipped']} "
          f"redelivered={h['redelivered']} (broker restarted for the wedged group coordinator)")


def test_worker_sigterm_mid_replay_then_restart(scenario, reference):
    s = scenario
    th = s.publish_in_background(s.bars)
    s.wait_applied(1500)
    assert s.worker.stop() == 0  # graceful: Faust commits its offsets
    s.worker.start()
    th.join(60)
    h = s.worker.wait_for(lambda h: h["bars_applied"] >= len(s.bars), 60)
    rep = s.check(reference)
    assert h["bars_applied"] == len(s.bars) and not h["deadletter"], h
    # the restarted worker rebuilt its state by catch-up and its live consumer resumed right after the
    # catch-up's end offsets: no offset consumed twice, no bar seen twice
    assert h["offsets_skipped"] == 0 and h["redelivered"] == 0, h
    print(f"\nSIGTERM: {rep}; offsets_skipped={h['offsets_skipped']} redelivered={h['redelivered']}")


def test_forced_redelivery_is_skipped_and_counted(scenario, reference):
    s = scenario
    th = s.publish_in_background(s.bars, rate=5000)
    th.join(60)
    h0 = s.wait_applied(len(s.bars))
    again = s.bars[1000:2500]  # an already processed range, re-published (new offsets, same seqs)
    asyncio.run(publish(s.broker.bootstrap, again))
    h = s.worker.wait_for(lambda h: h["redelivered"] >= h0["redelivered"] + len(again), 60)
    assert h["redelivered"] - h0["redelivered"] == len(again)
    assert h["bars_applied"] == len(s.bars) and h["scores_out"] == h0["scores_out"]
    rep = s.check(reference)
    assert rep["re_emitted_copies"] == 0
    print(f"\nredelivery: {len(again)} re-published bars skipped and counted; {rep}")


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="intermittent: the embedded broker (noida-db) can drop ~50 acknowledged "
                   "writes made in the last instant before a graceful stop under load (publisher saw no error, "
                   "consumer offsets stayed contiguous, 12 seq gaps -> data_gap alerts); the worker and the "
                   "publisher themselves reconnect and the run passes when the broker keeps its writes")
def test_broker_graceful_restart_mid_replay(scenario, own_broker, reference):
    s = scenario
    th = s.publish_in_background(s.bars, rate=1000)
    s.wait_applied(1000)
    own_broker.stop()            # SIGTERM: the broker writes its snapshot
    time.sleep(2)
    own_broker.start()           # same data dir and port; nothing else is restarted
    th.join(90)
    assert not th.is_alive() and s.pub_stats.get("sent") == len(s.bars), (s.pub_stats, s.pub_error)
    h = s.worker.wait_for(lambda h: h["bars_applied"] >= len(s.bars), 90)
    assert s.worker.proc.poll() is None, "the worker must survive the broker restart"
    rep = s.check(reference)
    print(f"\nbroker restart: publisher retries={s.pub_stats['retries']}, {rep}, "
          f"redelivered={h['redelivered']} offsets_skipped={h['offsets_skipped']}")


@pytest.mark.slow
def test_soak_short(tmp_path, monkeypatch):
    """CI-sized soak (1 minute at 500 bars/s, linear stand-in scorer): RSS growth < 5 %, lag bounded."""
    from bench.soak import run_soak
    res = run_soak(1.0, rate=500, symbols=100, sample_s=3, registry="linear", workdir=tmp_path, log=lambda s: None)
    s = res["summary"]
    print(f"\nsoak: {s}")
    assert "error" not in s["final_health"], s
    assert s["final_health"]["bars_in"] == s["bars"]
    assert s["rss_growth_pct"] < 5.0, s
    assert s["lag_median_bars"] < 5000, s
    os.environ.pop("TECHNIC_TOPIC_PREFIX", None)
