"""`technic-stream worker` (one-process mode): catch up from the input log, then consume live.
How recovery works (catch-up replay, offset ledger, suppressed
re-emission) is described once, in ``stream.service.catchup``.
"""

from __future__ import annotations

import asyncio
import logging

from stream.io.output import OutputSender
from stream.service.catchup import catch_up
from stream.service.direct import serve_direct
from stream.service.faust_mode import attach_agents
from stream.service.router import Router

log = logging.getLogger("technic.worker")


def run_worker(settings, registry_root=None, sectors=None, pipeline_config=None, model_version=None,
               models=None, online=None) -> None:
    """Catch up, then serve (direct mode, or the Faust worker) until SIGTERM/SIGINT."""
    import faust

    from stream.service.app import create_app
    from stream.service.warmup import warm_process
    from stream.stages.models import ModelSource
    from stream.stages.pipeline import ScoringPipeline

    models = models or ModelSource(registry_root, model_version)
    extensions = []
    if online is not None and online.enabled:  # drift monitoring (+ online learning if configured)
        from stream.online.layer import OnlineLayer, registry_reference_loader
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

    warm_process(sectors, models.current, pipeline.cfg.top_k)
    log.info("catch-up from %s (model %s)", settings.bootstrap, models.version)
    counts = asyncio.run(_catch_up())
    log.info("catch-up done: %s; model %s", counts, models.version)
    if settings.ingest == "direct":
        asyncio.run(serve_direct(settings, router))
        return
    asyncio.set_event_loop(asyncio.new_event_loop())
    app, topics = create_app(settings)
    attach_agents(app, topics, router, settings, OutputSender(settings.bootstrap))
    worker = faust.Worker(app, loglevel=logging.WARNING, quiet=True)
    worker.execute_from_commandline()
