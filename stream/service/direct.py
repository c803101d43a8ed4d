"""Direct mode: the worker's live phase without Faust's consumer.

The embedded broker answers empty fetches at once (it ignores ``fetch.max.wait.ms``), so an
idle Faust consumer thread spins a core and contends for the GIL with the scoring loop (the
live-path figures of both modes are in bench/results/stream.md and the README's Performance
table). Direct mode therefore continues exactly where the catch-up stopped with one group-less aiokafka
consumer over the input topics, pauses between empty fetches, runs the same timers as the
Faust mode and serves ``/health``, ``/ready`` and ``/metrics`` with aiohttp. It suits one worker
(the embedded broker's limit anyway); ``--ingest faust`` runs the Faust agents in a consumer
group for several workers on a real cluster.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from stream.io.fetch_pacing import fetch_batch
from stream.io.kafka import new_consumer
from stream.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from stream.service.metrics import readiness
from stream.service.metrics import render as render_metrics
from stream.io.output import OutputSender
from stream.io.topics_config import topic_name
from stream.service.explainer import Explainer
from stream.service.router import Router, emit, health, process_batch, tick, watch_registry

log = logging.getLogger("technic.worker")
KINDS = ("control", "fundamentals", "alt", "bars")  # side topics before bars within a batch


async def direct_ingest(settings, router: Router, send, explainer=None) -> None:
    """Consume the input topics from where the catch-up stopped, in micro-batches, until cancelled."""
    names = [topic_name(k) for k in KINDS]
    # auto_offset_reset="none": a broker that restarts may briefly report a shorter log; jumping to
    # "latest" would silently skip records, so re-seek to the ledger's position and retry instead
    c = new_consumer(settings.bootstrap, fetch_max_wait_ms=20, max_partition_fetch_bytes=8 * 1024 * 1024,
                     auto_offset_reset="none")
    await c.start()
    try:
        await c.topics()
        tps = [TopicPartition(t, q) for t in names for q in sorted(c.partitions_for_topic(t) or [])]
        c.assign(tps)
        for tp in tps:
            if tp.topic == topic_name("control"):
                await c.seek_to_end(tp)  # past control messages are history: the registry says what's promoted
            else:
                c.seek(tp, router.ledger.handled.get((tp.topic, tp.partition), -1) + 1)
        order = {t: i for i, t in enumerate(names)}
        pacer = settings.pacer()
        while True:
            try:
                batch = await fetch_batch(c, pacer, settings.batch_max, tps)
            except OffsetOutOfRangeError as e:
                log.warning("offsets out of range (%s): broker restarting? re-seeking in 0.5 s", e)
                await asyncio.sleep(0.5)
                for tp in tps:
                    if tp.topic != topic_name("control"):
                        c.seek(tp, router.ledger.handled.get((tp.topic, tp.partition), -1) + 1)
                continue
            for tp in tps:  # the consumer's highwater per partition: /metrics reports the lag from it
                hw = c.highwater(tp)
                if hw is not None:
                    router.highwaters[(tp.topic, tp.partition)] = hw
            if not batch:
                continue
            await process_batch(router, ((m.topic, m.partition, m.offset, m.key, m.value)
                                         for tp in sorted(batch, key=lambda tp: (order[tp.topic], tp.partition))
                                         for m in batch[tp]), send, explainer=explainer)
    finally:
        await c.stop()


async def _every(seconds: float, fn) -> None:
    while True:
        await asyncio.sleep(seconds)
        await fn()


async def serve_direct(settings, router: Router, models_poll_s: float = 2.0) -> None:
    """Run ingest, timers and the web views until SIGTERM/SIGINT, then shut down cleanly."""
    p = router.pipeline
    send = OutputSender(settings.bootstrap)
    explainer = Explainer(OutputSender(settings.bootstrap)) if p.deferred is not None else None
    reported: dict = {}

    async def on_tick():
        await emit(p, send, tick(router, reported), explainer)

    async def on_registry():
        watch_registry(router)

    async def health_view(request):
        return web.json_response(health(router))

    async def ready_view(request):
        ok, detail = readiness(p, router)
        return web.json_response({"ready": ok, **detail}, status=200 if ok else 503)

    async def metrics_view(request):
        return web.Response(body=render_metrics(p, router, highwaters=router.highwaters),
                            headers={"Content-Type": METRICS_CONTENT_TYPE})

    wapp = web.Application()
    wapp.router.add_get("/health", health_view)
    wapp.router.add_get("/ready", ready_view)
    wapp.router.add_get("/metrics", metrics_view)
    runner = web.AppRunner(wapp, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_bind, settings.web_port).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    log.info("live ingest (direct) from %s; health on http://%s:%d/health", settings.bootstrap,
             settings.web_bind, settings.web_port)
    tasks = [asyncio.create_task(direct_ingest(settings, router, send, explainer)),
             asyncio.create_task(_every(0.25, on_tick)),
             asyncio.create_task(_every(models_poll_s, on_registry))]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    failed = [t for t in done if t is not waiter and t.exception() is not None]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if explainer is not None:
        if not failed:
            await explainer.drain()   # the explanations of every score sent
        await explainer.close()
        await explainer.send.close()
    await send.close()
    await runner.cleanup()
    if failed:
        raise failed[0].exception()
    log.info("worker stopped: %s", p.status())
