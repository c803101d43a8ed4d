"""Writing the role workers' snapshots off the event loop, one at a time.

A snapshot is captured on the event loop, between two micro-batches, after the outputs of the
state it covers were acknowledged (``capture`` in ``stream.stages.checkpoint`` /
``stream.stages.scoring_checkpoint``: copies, a few ms); its record is then built in a thread
(zlib, base64) and sent by the snapshot sender (its own producer: a multi-MB record does not
queue the rows or scores behind it) while the worker goes on with the next batches. A per-symbol
checkpoint of 250 symbols blocked the loop for 85-500 ms before; the tail latency of the
timestamps it fell on showed it.

At most one snapshot is in flight: a checkpoint due while the previous one is still being
written waits for the next interval. A failed write is raised by ``check`` on the next
iteration, as a failed inline send was. ``drain`` waits for the one in flight (shutdown: the
final snapshot goes after it, so the newest snapshot is the last written).
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from stream.io.output import Output


class CheckpointWriter:
    def __init__(self, send):
        self.send = send
        self.task: asyncio.Task | None = None
        self.written = 0

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self, builders: list[Callable[[], Output]], after: Awaitable | None = None) -> None:
        """Build and send the captured snapshots in the background (``after``: sent only once it is
        done, e.g. the deferred explanations of the timestamps the snapshot covers)."""
        if self.busy:
            raise RuntimeError("a snapshot is still being written")
        self.task = asyncio.create_task(self._write(builders, after))

    async def _write(self, builders, after=None) -> None:
        outs = await asyncio.to_thread(lambda: [b() for b in builders])
        if after is not None:
            await after
        await self.send(outs)
        self.written += 1

    def check(self) -> None:
        """Raise the error of a finished background write, if it failed."""
        if self.task is not None and self.task.done():
            task, self.task = self.task, None
            task.result()

    async def drain(self) -> None:
        if self.task is not None:
            task, self.task = self.task, None
            await task

    async def write_now(self, builders: list[Callable[[], Output]]) -> None:
        """The last snapshot (shutdown): after the one in flight, awaited."""
        await self.drain()
        await self.send([b() for b in builders])
        self.written += 1
