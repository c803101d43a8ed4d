"""Faust mode (``--ingest faust``): the worker's agents, timers and web views on a Faust app."""

from __future__ import annotations

import time

from stream.io.output import Output, send_then
from stream.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from stream.service.metrics import readiness
from stream.service.metrics import render as render_metrics
from stream.service.router import Router, health, process_batch, tick, watch_registry


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
        await send_then(send, tick(router, reported), router.pipeline.explanations)

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
