"""What the split-mode role workers (``symbol_worker``, ``scoring_worker``) share: their Kafka
clients (one group-less consumer, one sender for the stage's outputs, one sender sized for
snapshot records, so a multi-MB snapshot never delays a row or a score) and running until a
signal (SIGTERM, SIGINT, SIGHUP set the worker's ``stop`` event; it writes its last snapshot)."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import asynccontextmanager

from stream.io.kafka import new_consumer
from stream.io.output import OutputSender
from stream.service.snapshots import SNAPSHOT_MAX_BYTES

log = logging.getLogger("technic.worker")


@asynccontextmanager
async def role_clients(bootstrap: str):
    """(consumer, output sender, snapshot sender), started; all closed on exit."""
    c = new_consumer(bootstrap, fetch_max_wait_ms=20, max_partition_fetch_bytes=8 * 1024 * 1024,
                     auto_offset_reset="earliest")
    await c.start()
    send = OutputSender(bootstrap)
    snap_send = OutputSender(bootstrap, max_request_size=SNAPSHOT_MAX_BYTES)
    try:
        yield c, send, snap_send
    finally:
        await c.stop()
        await send.close()
        await snap_send.close()


async def run_until_signal(worker, role: str) -> None:
    """Run ``worker`` (``run()``, ``stop`` event, ``status()``) until a signal stops it."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, worker.stop.set)
    await worker.run()
    log.info("%s worker stopped: %s", role, worker.status())
