"""Sending pipeline outputs: one idempotent producer, a batch per call, resend on failure.

Faust's per-message ``Topic.send`` machinery costs ~1 ms per record, so outputs go through an
aiokafka producer of our own, batched per call. If the producer fails (e.g.
``OutOfOrderSequenceNumber`` after a broker restart: the idempotent session is gone) it is
recreated and the whole batch is resent: re-sent records are identical and keyed, so duplicates
are harmless by design. Outputs not sent at shutdown are re-emitted by the next start's catch-up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from stream.io.codecs import encode
from stream.io.kafka import new_producer
from stream.io.topics_config import topic_name

log = logging.getLogger("technic.worker")


@dataclass
class Output:
    """One record a stage produces, for the sender: topic kind, Kafka key, JSON value."""

    kind: str           # scores | alerts | deadletter | features | watermarks | snapshots
    key: bytes | None
    value: dict


async def send_then(send, outs: list[Output], follow) -> list[Output]:
    """Send ``outs``, then ``follow()``'s outputs (computed only after ``outs`` are acknowledged:
    the stages' deferred explanations, whose TreeSHAP must not delay the scores); return both."""
    await send(outs)
    more = follow()
    if more:
        await send(more)
    return outs + more


@functools.lru_cache(maxsize=1 << 16)
def key_hash(key: bytes) -> int:
    """The default partitioner's positive murmur2 of a key, remembered: the keys (symbols,
    timestamps) repeat every timestamp, and aiokafka's murmur2 is pure Python (~1.4 us a key)."""
    return murmur2(key) & 0x7FFFFFFF


async def send_batched(producer, records) -> list:
    """Enqueue ``(topic, key, value)`` records as one batch per topic partition, in order within
    each; return the delivery futures. The partition of a key is the default partitioner's (murmur2,
    as ``producer.send`` and the Java client choose it; a null key: a random partition). ~3x less
    time than one ``send`` per record (505 scores: 1.7 vs 5.1 ms to enqueue, acknowledged in 4 vs
    9-10 ms), and the records of a timestamp leave together. A record too large for a batch of its
    own (a snapshot) goes through ``send``."""
    groups: dict[tuple[str, int], list] = {}
    partitions: dict[str, list[int]] = {}
    for topic, key, value in records:
        parts = partitions.get(topic)
        if parts is None:
            parts = partitions[topic] = sorted(await producer.partitions_for(topic))
        q = parts[key_hash(key) % len(parts)] if key is not None else random.choice(parts)
        groups.setdefault((topic, q), []).append((key, value))
    futs = []
    for (topic, q), recs in groups.items():
        batch = producer.create_batch()
        for key, value in recs:
            if batch.append(key=key, value=value, timestamp=None) is not None:
                continue
            if batch.record_count():
                futs.append(await producer.send_batch(batch, topic, partition=q))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is not None:
                    continue
            futs.append(await producer.send(topic, key=key, value=value, partition=q))   # larger than a batch
        if batch.record_count():
            futs.append(await producer.send_batch(batch, topic, partition=q))
    return futs


class OutputSender:
    """``await sender(outs)`` delivers outputs (and retrain requests to control) or raises."""

    def __init__(self, bootstrap: str, max_attempts: int = 60, **producer_kw):
        self.bootstrap = bootstrap
        self.producer_kw = producer_kw
        self.max_attempts = max_attempts
        self.producer = None
        self.closing = False

    def records(self, outs: list[Output]) -> list[tuple[str, bytes | None, bytes]]:
        names: dict[str, str] = {}   # topic names resolved once per call, not once per record
        recs = [(names.get(o.kind) or names.setdefault(o.kind, topic_name(o.kind)), o.key, encode(o.value))
                for o in outs]
        for o in outs:  # a severe drift alert asks for a retrain on the control topic
            if o.kind == "alerts" and o.value.get("type") == "retrain_requested":
                recs.append((topic_name("control"), None, encode(
                    {"type": "retrain_requested", "at": o.value["emit_time"], "reason": o.value["message"][:500]})))
        return recs

    async def __call__(self, outs: list[Output]) -> None:
        if not outs or self.closing:
            return
        records = self.records(outs)
        for attempt in range(1, self.max_attempts + 1):
            try:
                if self.producer is None:
                    self.producer = new_producer(self.bootstrap, **self.producer_kw)
                    await self.producer.start()
                await asyncio.gather(*await send_batched(self.producer, records))
                return
            except KafkaError as e:
                if self.closing:
                    return
                log.warning("producer failed (%s), attempt %d: recreating it and resending %d records",
                            e, attempt, len(records))
                await self._drop()
                await asyncio.sleep(min(5.0, 0.2 * attempt))
        raise RuntimeError(f"cannot deliver {len(records)} records after {self.max_attempts} attempts")

    async def _drop(self) -> None:
        prod, self.producer = self.producer, None
        if prod is not None:
            try:
                await prod.stop()
            except Exception:  # a broken producer may fail to close; it is replaced anyway
                pass

    async def close(self) -> None:
        self.closing = True
        await self._drop()
