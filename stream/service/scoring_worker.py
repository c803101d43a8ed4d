"""`technic-stream worker --role scoring`: the scoring stage over ``technic.features``.

One ordered consumer of the features topic (one partition) from its beginning: the market
state it keeps (per-symbol beta, correlation to the market) is a fold over every timestamp in
order, so a restarted scoring worker rebuilds it by replaying the features topic; re-emitted
scores are identical (pure function of model version and bars up to t) and consumers
de-duplicate them by key. The registry is polled for promoted models every 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiokafka import TopicPartition

from stream.io.kafka import new_consumer
from stream.io.output import OutputSender
from stream.io.topics_config import topic_name
from stream.service.web import serve_health
from stream.stages.scoring import ScoringStage

log = logging.getLogger("technic.worker")


async def serve_scoring_worker(settings, stage: ScoringStage, models_poll_s: float = 2.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    boot = settings.bootstrap
    c = new_consumer(boot, fetch_max_wait_ms=20, max_partition_fetch_bytes=8 * 1024 * 1024,
                     auto_offset_reset="earliest")
    await c.start()
    send = OutputSender(boot)
    runner = await serve_health(settings.web_bind, settings.web_port, lambda: {"role": "scoring", **stage.status()})
    try:
        name = topic_name("features")
        await c.topics()
        tps = [TopicPartition(name, q) for q in sorted(c.partitions_for_topic(name) or [0])]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        idle, last_poll = settings.idle_sleep_s, time.monotonic()
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=5, max_records=settings.batch_max)
            now = time.time()
            outs = [o for tp in sorted(batch) for m in batch[tp]
                    for o in stage.on_record(m.value, tp.topic, tp.partition, m.offset, None)]
            outs += stage.poll(now)
            await send(outs)
            if time.monotonic() - last_poll >= models_poll_s:
                last_poll = time.monotonic()
                try:
                    stage.models.poll_registry()
                except Exception as e:  # a broken registry must not stop scoring with the current model
                    log.warning("registry poll failed: %s", e)
            if not batch:
                await asyncio.sleep(idle)
                idle = min(settings.idle_max_s, idle * 2)
            else:
                idle = settings.idle_sleep_s
    finally:
        await c.stop()
        await send.close()
        await runner.cleanup()
    log.info("scoring worker stopped: %s", stage.status())
