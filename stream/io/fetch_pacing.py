"""Fetching micro-batches without spinning: how a group-less consumer waits between empty fetches.

aiokafka's fetcher asks the broker for data in a background task and relies on the broker's
long poll (``fetch_max_wait_ms``) to rest while nothing arrives. The embedded broker (noida-db)
answers every fetch at once, so a consumer left assigned and resumed spins: ~0.9 CPU-seconds per
second per idle process (``python bench/fetch_pacing.py``, ``bench/results/fetch_pacing.md``); three
role workers on a 2-core machine then spend the cores on empty fetches, and the scoring stage's
close slows down. The defaults (1 ms wait, 4 ms pause while live) trade ~3 ms per hop for a
fraction of that CPU.

``fetch_batch`` asks for records with a short wait (``wait_ms``); when none come it pauses the
partitions (the fetcher stops), sleeps, and resumes them. The sleep starts at ``hot_sleep_s`` and
stays there while records came within ``hot_for_s`` (a live feed: the next record waits at most a
few ms), then doubles up to ``cold_sleep_s`` (a quiet worker costs little CPU). On Apache Kafka the
broker's long poll does the waiting and the same loop only rarely sleeps.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class FetchPacer:
    wait_ms: int = 1              # getmany's wait for records already being fetched
    hot_sleep_s: float = 0.004    # pause after an empty fetch while the feed is live ...
    hot_for_s: float = 1.0        # ... i.e. a record came less than this long ago
    cold_sleep_s: float = 0.05    # doubling up to this once the feed is quiet
    _sleep: float = field(default=0.0, init=False)
    _last_data: float = field(default=float("-inf"), init=False)

    def after(self, got_records: bool, now: float | None = None) -> float:
        """Seconds to pause after a fetch (0 after one that returned records)."""
        now = time.monotonic() if now is None else now
        if got_records:
            self._last_data, self._sleep = now, 0.0
            return 0.0
        if now - self._last_data < self.hot_for_s:
            self._sleep = self.hot_sleep_s
        else:
            self._sleep = min(self.cold_sleep_s, max(self.hot_sleep_s, self._sleep * 2))
        return self._sleep


async def fetch_batch(consumer, pacer: FetchPacer, max_records: int, partitions=None) -> dict:
    """One micro-batch ``{TopicPartition: [records]}`` (may be empty after a paced pause)."""
    batch = await consumer.getmany(timeout_ms=pacer.wait_ms, max_records=max_records)
    pause = pacer.after(bool(batch))
    if pause:
        # only what is assigned now, and resumed only if still assigned: a group rebalance may move
        # partitions during the sleep (pausing or resuming an unassigned one raises)
        owned = consumer.assignment()
        tps = [tp for tp in (partitions if partitions is not None else owned) if tp in owned]
        consumer.pause(*tps)
        try:
            await asyncio.sleep(pause)
        finally:
            owned = consumer.assignment()
            consumer.resume(*[tp for tp in tps if tp in owned])
    return batch
