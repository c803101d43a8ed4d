"""`technic-stream worker`: catch up from the input log, then consume live.

State is a pure fold of the input topics, so recovery is a replay:

1. **Catch-up.** Before Faust starts, the worker reads the fundamentals and
   alt topics, then the bars topic, from the beginning to their current end
   with a plain (group-less) consumer, feeding the same ``ScoringPipeline``.
   Scores are suppressed up to the timestamp before the last one already on
   the scores topic (that one is re-emitted whole: a crash may have cut it);
   dead letters already on the dead-letter topic are not repeated.
2. **Live.** Either the direct ingest service (``stream.direct``, default:
   one group-less consumer continuing exactly where the catch-up stopped) or
   the Faust agents (``--ingest faust``: from the group's committed offsets).
   Every record at or below the offset the worker already handled (the
   catch-up, or Faust's known restart off-by-ones, faust-streaming #48/#606)
   is skipped and counted; a forward jump in offsets raises an alert.

Results are therefore the same after a crash, a graceful restart or a forced
redelivery, on any broker, without transactions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import orjson
from aiokafka import TopicPartition

from .alerts import make_alert
from .codecs import parse_ts
from .kafka import new_consumer
from .output import OutputSender
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import readiness
from .metrics import render as render_metrics
from .pipeline import Output, ScoringPipeline
from .topics_config import topic_name

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


async def process_batch(router: Router, records, send, keep=None) -> list[Output]:
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
        await send(outs)
        return outs
    finally:
        p.batch_done()


async def _read_all(bootstrap: str, topic: str, on_batch) -> int:
    """Read a topic from the beginning to its end offsets (at call time) without a group.

    ``on_batch(messages)`` is awaited for each fetched batch, in offset order per partition.
    """
    c = new_consumer(bootstrap, auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024)
    await c.start()
    n = 0
    try:
        if topic not in await c.topics():  # also refreshes the metadata
            return 0
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return 0
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            batch = await c.getmany(*todo, timeout_ms=1000, max_records=20000)
            for tp, msgs in batch.items():
                msgs = [m for m in msgs if m.offset < ends[tp]]
                if msgs:
                    await on_batch(msgs)
                    n += len(msgs)
            for tp in list(todo):
                if await c.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await c.stop()
    return n


async def catch_up(bootstrap: str, router: Router, send) -> dict:
    """Replay the input topics into the pipeline (see module docstring); return counts."""
    t0 = time.time()
    last_score = {"ts": None}

    async def on_scores(msgs):
        for m in msgs:
            try:
                ts = parse_ts(orjson.loads(m.value)["ts"])
            except Exception:  # a foreign record on the scores topic: ignore it
                continue
            if last_score["ts"] is None or ts > last_score["ts"]:
                last_score["ts"] = ts

    async def on_dead(msgs):
        for m in msgs:
            try:
                v = orjson.loads(m.value)
                key = (v["source_topic"], v["partition"])
                off = v["offset"] if v["offset"] is not None else -1
                router.dlq_seen[key] = max(router.dlq_seen.get(key, -1), off)
            except Exception:
                continue

    await _read_all(bootstrap, topic_name("scores"), on_scores)
    await _read_all(bootstrap, topic_name("deadletter"), on_dead)
    p = router.pipeline
    if last_score["ts"] is not None:
        from technic.features.incremental import to_ns
        p.suppress_until = max(p.suppress_until, to_ns(last_score["ts"].replace(tzinfo=None)) - 1)
        router.alerts_until = last_score["ts"]
    counts = {"scores_emitted": 0}

    async def feed(msgs):
        outs = await process_batch(router, ((m.topic, m.partition, m.offset, m.key, m.value) for m in msgs),
                                   send, keep=router.keep)
        counts["scores_emitted"] += sum(o.kind == "scores" for o in outs)

    for kind in ("fundamentals", "alt", "bars"):
        counts[kind] = await _read_all(bootstrap, topic_name(kind), feed)
    router.alerts_until = None
    router.catchup_done = True
    counts["seconds"] = round(time.time() - t0, 2)
    return counts


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


def attach_agents(app, topics, router: Router, settings, send, models_poll_s: float = 2.0):
    """Faust mode: agents (consumer group), timers and web views of the worker on ``app``."""
    p = router.pipeline

    @app.on_before_shutdown.connect
    async def _stop_producer(app, **kwargs):  # noqa: ARG001
        await send.close()

    def records(events):
        return ((ev.message.topic, ev.message.partition, ev.message.offset, ev.message.key, ev.value)
                for ev in events)

    def admit_batch(events) -> list[Output]:
        now = time.time()
        return [o for r in records(events) for o in router.handle(*r, now)]

    @app.agent(topics["bars"], name="technic.bars_agent")
    async def bars_agent(stream):
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
            await process_batch(router, records(events), send)

    for kind in ("fundamentals", "alt", "control"):
        def make(kind):
            async def side_agent(stream):
                async for events in stream.take_events(1000, within=0.05):
                    await send(admit_batch(events))
            side_agent.__name__ = f"{kind}_agent"
            return side_agent
        app.agent(topics[kind], name=f"technic.{kind}_agent")(make(kind))

    reported: dict = {}

    @app.timer(0.25)
    async def close_idle_timestamps():
        await send(tick(router, reported))

    @app.timer(models_poll_s)
    async def watch_registry_timer():
        watch_registry(router)

    @app.page("/health")
    async def health_page(web, request):
        return web.json(health(router))

    @app.page("/ready")
    async def ready(web, request):
        ok, detail = readiness(p, router)
        return web.json({"ready": ok, **detail}, status=200 if ok else 503)

    @app.page("/metrics")
    async def metrics(web, request):
        # aiohttp refuses a charset inside content_type=, so the full type goes in the header
        return web.bytes(render_metrics(p, router, app), headers={"Content-Type": METRICS_CONTENT_TYPE})


def run_worker(settings, registry_root=None, sectors=None, pipeline_config=None, model_version=None,
               models=None, online=None) -> None:
    """Catch up, then serve (direct mode, or the Faust worker) until SIGTERM/SIGINT."""
    import faust

    from .app import create_app
    from .models import ModelSource
    from .pipeline import ScoringPipeline

    models = models or ModelSource(registry_root, model_version)
    extensions = []
    if online is not None and online.enabled:  # drift monitoring (+ online learning if configured)
        from technic.online.layer import OnlineLayer, registry_reference_loader
        extensions.append(OnlineLayer(online, reference_loader=registry_reference_loader(registry_root)))
    pipeline = ScoringPipeline(models, sectors=sectors, config=pipeline_config, extensions=extensions)
    for ext in extensions:
        ext.bind(pipeline)
    router = Router(pipeline)

    async def _catch_up():
        sender = OutputSender(settings.bootstrap)
        try:
            return await catch_up(settings.bootstrap, router, sender)
        finally:
            await sender.close()

    log.info("catch-up from %s (model %s)", settings.bootstrap, models.version)
    counts = asyncio.run(_catch_up())
    log.info("catch-up done: %s; model %s", counts, models.version)
    if settings.ingest == "direct":
        from .direct import serve_direct
        asyncio.run(serve_direct(settings, router))
        return
    asyncio.set_event_loop(asyncio.new_event_loop())
    app, topics = create_app(settings)
    attach_agents(app, topics, router, settings, OutputSender(settings.bootstrap))
    worker = faust.Worker(app, loglevel=logging.WARNING, quiet=True)
    worker.execute_from_commandline()
