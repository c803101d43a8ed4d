"""Sending pipeline outputs: one idempotent producer, a batch per call, resend on failure.

Faust's per-message ``Topic.send`` machinery costs ~1 ms per record, so outputs go through an
aiokafka producer of our own, batched per call. If the producer fails (e.g.
``OutOfOrderSequenceNumber`` after a broker restart: the idempotent session is gone) it is
recreated and the whole batch is resent: re-sent records are identical and keyed, so duplicates
are harmless by design. Outputs not sent at shutdown are re-emitted by the next start's catch-up.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.errors import KafkaError

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


class OutputSender:
    """``await sender(outs)`` delivers outputs (and retrain requests to control) or raises."""

    def __init__(self, bootstrap: str, max_attempts: int = 60, **producer_kw):
        self.bootstrap = bootstrap
        self.producer_kw = producer_kw
        self.max_attempts = max_attempts
        self.producer = None
        self.closing = False

    def records(self, outs: list[Output]) -> list[tuple[str, bytes | None, bytes]]:
        recs = [(topic_name(o.kind), o.key, encode(o.value)) for o in outs]
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
                futs = [await self.producer.send(t, key=k, value=v) for t, k, v in records]
                await asyncio.gather(*futs)
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
