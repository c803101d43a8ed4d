"""Pacing of the group-less consumers and the background snapshot writer (pure logic, no broker)."""

import asyncio

import pytest

from stream.io.fetch_pacing import FetchPacer
from stream.io.output import Output
from stream.service.checkpoint_writer import CheckpointWriter


def test_pacer_stays_short_while_the_feed_is_live_then_backs_off():
    p = FetchPacer(hot_sleep_s=0.002, hot_for_s=1.0, cold_sleep_s=0.05)
    assert p.after(False, now=0.0) == 0.002           # never saw data: starts short, then doubles
    assert p.after(False, now=0.01) == 0.004
    assert p.after(True, now=10.0) == 0.0             # records: fetch again at once
    assert [p.after(False, now=10.0 + 0.1 * i) for i in range(1, 10)] == [0.002] * 9   # live (< 1 s)
    cold = [p.after(False, now=11.5 + 0.1 * i) for i in range(7)]
    assert cold == [0.004, 0.008, 0.016, 0.032, 0.05, 0.05, 0.05]                    # quiet: doubles to the cap
    assert p.after(True, now=20.0) == 0.0 and p.after(False, now=20.1) == 0.002       # live again


def test_checkpoint_writer_builds_off_the_loop_one_at_a_time_and_raises_failures():
    sent = []

    async def send(outs):
        sent.append([o.value for o in outs])

    async def fail(outs):
        raise RuntimeError("cannot deliver")

    async def main():
        w = CheckpointWriter(send)
        w.start([lambda: Output("snapshots", b"0", {"n": 1}), lambda: Output("snapshots", b"1", {"n": 2})])
        assert w.busy
        with pytest.raises(RuntimeError, match="still being written"):
            w.start([lambda: Output("snapshots", b"0", {"n": 3})])
        await w.drain()
        await w.write_now([lambda: Output("snapshots", b"0", {"n": 4})])
        assert sent == [[{"n": 1}, {"n": 2}], [{"n": 4}]] and w.written == 2 and not w.busy
        bad = CheckpointWriter(fail)
        bad.start([lambda: Output("snapshots", b"0", {})])
        while bad.busy:
            await asyncio.sleep(0.001)
        with pytest.raises(RuntimeError, match="cannot deliver"):
            bad.check()
    asyncio.run(main())


def test_fetch_batch_pauses_only_what_is_assigned_across_a_rebalance():
    """A group rebalance can move partitions while the consumer sleeps: pausing or resuming a partition
    that is no longer assigned raises in aiokafka, so only still-assigned ones are touched."""
    from stream.io.fetch_pacing import fetch_batch

    class Consumer:
        def __init__(self):
            self.owned, self.paused = {"a", "b"}, set()

        def assignment(self):
            return set(self.owned)

        async def getmany(self, timeout_ms, max_records):
            return {}

        def pause(self, *tps):
            assert set(tps) <= self.owned
            self.paused |= set(tps)

        def resume(self, *tps):
            assert set(tps) <= self.owned
            self.paused -= set(tps)

    async def main():
        c = Consumer()
        task = asyncio.create_task(fetch_batch(c, FetchPacer(hot_sleep_s=0.01), 10, ["a", "b", "c"]))
        await asyncio.sleep(0.005)
        assert c.paused == {"a", "b"}          # "c" is not assigned: left alone
        c.owned = {"b", "d"}                   # rebalance during the pause
        assert await task == {}
        assert "b" not in c.paused             # resumed; "a" went away with the rebalance, untouched
    asyncio.run(main())
