"""Routing consumed records to the pipeline, with idempotency by position; batch, timers, health.

``Router.handle`` skips every record at or below the offset already handled per (topic,
partition) (the catch-up, a redelivery, Faust's restart off-by-ones, faust-streaming #48/#606)
and dispatches the rest by topic kind; ``process_batch`` runs one fetched micro-batch
through it, closes the timestamps that became ready and sends the outputs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from stream.io.codecs import parse_ts
from stream.io.output import Output, send_then
from stream.io.topics_config import topic_name
from stream.stages.alerts import make_alert
from stream.stages.pipeline import ScoringPipeline

log = logging.getLogger("technic.worker")


@dataclass
class OffsetLedger:
    """Highest handled offset per (topic, partition): the worker's idempotency by position."""

    handled: dict = field(default_factory=dict)
    skipped: int = 0
    gaps: list = field(default_factory=list)

    def admit(self, topic: str, partition: int, offset: int) -> bool:
        key = (topic, partition)
        last = self.handled.get(key, -1)
        if offset <= last:
            self.skipped += 1
            return False
        if last >= 0 and offset > last + 1:
            self.gaps.append((topic, partition, last, offset))
        self.handled[key] = offset
        return True


class Router:
    """Dispatches raw records of each topic kind to the pipeline, filtering repeats."""

    def __init__(self, pipeline: ScoringPipeline):
        self.pipeline = pipeline
        self.ledger = OffsetLedger()
        self.dlq_seen: dict[tuple[str, int], int] = {}
        self.alerts_until = None
        self.catchup_done = False  # set by catch_up(); /ready reports it
        self.highwaters: dict[tuple[str, int], int] = {}  # (topic, partition) -> consumer highwater (lag)
        self.kinds = {topic_name(k): k for k in ("bars", "fundamentals", "alt", "control")}

    def handle(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes,
               received: float | None = None) -> list[Output]:
        """One consumed record (its Kafka key included: symbol-keyed topics must carry the symbol)."""
        if not self.ledger.admit(topic, partition, offset):
            return []
        kind = self.kinds.get(topic, topic)
        p = self.pipeline
        if kind == "bars":
            return p.on_bar(value, topic, partition, offset, received, key=key)
        if kind == "fundamentals":
            return p.on_fundamental(value, topic, partition, offset, key=key)
        if kind == "alt":
            return p.on_alt(value, topic, partition, offset, key=key)
        if kind == "control":
            return p.on_control(value, topic, partition, offset)
        return []

    def keep(self, out: Output) -> bool:
        """During catch-up, drop dead letters and alerts that were already emitted."""
        if out.kind == "deadletter":
            v = out.value
            return v["offset"] is None or v["offset"] > self.dlq_seen.get((v["source_topic"], v["partition"]), -1)
        if out.kind == "alerts" and self.alerts_until is not None:
            return parse_ts(out.value["ts"]) > self.alerts_until
        return True


async def emit(pipeline, send, outs: list[Output], explainer=None) -> list[Output]:
    """Send a batch's outputs; then the explanations of the timestamps it scored (``--explain
    deferred``): computed here and sent after them, or handed to ``explainer``
    (``stream.service.explainer``) to be computed and sent in the background."""
    if explainer is None:
        return await send_then(send, outs, pipeline.explanations)
    await send(outs)
    explainer.submit(pipeline.deferred_jobs())
    explainer.check()
    return outs


async def process_batch(router: Router, records, send, keep=None, explainer=None) -> list[Output]:
    """Handle fetched ``(topic, partition, offset, key, value)`` records as one micro-batch.

    Routes every record, closes the timestamps that became ready, sends the outputs (those
    ``keep`` accepts) and returns them. The input counts as busy, not quiet, until the send is done.
    """
    p = router.pipeline
    now = time.time()
    p.batch_started()
    try:
        outs: list[Output] = []
        for topic, partition, offset, key, value in records:
            outs += router.handle(topic, partition, offset, key, value, now)
        outs += p.poll()
        if keep is not None:
            outs = [o for o in outs if keep(o)]
        return await emit(p, send, outs, explainer)
    finally:
        p.batch_done()


def tick(router: Router, reported: dict) -> list[Output]:
    """Timer work: close idle timestamps, report consumer offset gaps."""
    p = router.pipeline
    outs = p.poll()
    new_gaps = router.ledger.gaps[reported.get("n", 0):]
    reported["n"] = len(router.ledger.gaps)
    for topic, part, last, off in new_gaps:
        outs.append(Output("alerts", b"offset_gap", make_alert(
            "data_gap", "critical", "consumer_offset_gap", off - last - 1, 0, None, p.models.version,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            f"{topic}[{part}]: consumer jumped from offset {last} to {off}")))
    return outs


def watch_registry(router: Router) -> None:
    try:
        router.pipeline.models.poll_registry()
    except Exception as e:  # a broken registry must not stop scoring with the current model
        log.warning("registry poll failed: %s", e)


def health(router: Router) -> dict:
    return {"status": "ok", **router.pipeline.status(), "offsets_skipped": router.ledger.skipped}
