"""Deferred explanations (``--explain deferred``) computed and sent in the background.

A stage scoring with deferred explanations leaves one job per scored timestamp (a closure over that
timestamp's model inputs and predictions: TreeSHAP, ~0.1-0.5 s for 505 symbols). The worker sends
the scores first, then hands the jobs to the ``Explainer``: one background task runs them in order,
each in a thread (LightGBM's TreeSHAP runs in C with the GIL released, so the event loop goes on
fetching rows and closing the next timestamp), and sends each timestamp's explanation records after
its scores. A snapshot that covers scored timestamps is written only after their explanations were
sent (``wait_sent``), so a restart never loses an explanation (at least once, like the scores).
"""

from __future__ import annotations

import asyncio


class Explainer:
    def __init__(self, send):
        self.send = send
        self.queue: asyncio.Queue = asyncio.Queue()
        self.submitted = 0
        self.sent = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._error: BaseException | None = None

    def submit(self, jobs: list) -> None:
        """Queue the jobs (in timestamp order); each returns a list of outputs."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        for job in jobs:
            self.queue.put_nowait(job)
            self.submitted += 1

    async def _run(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                outs = await asyncio.to_thread(job)
                await self.send(outs)
            except BaseException as e:  # surfaced by check() in the worker's loop
                self._error = e
                self._changed.set()
                raise
            self.sent += 1
            self._changed.set()

    def check(self) -> None:
        """Raise the error of a failed job or send (the worker stops, as on a failed score send)."""
        if self._error is not None:
            raise RuntimeError(f"deferred explanations failed: {self._error}") from self._error

    async def wait_sent(self, n: int) -> None:
        """Until the first ``n`` submitted jobs' records are sent."""
        while self.sent < n:
            self.check()
            self._changed.clear()
            await self._changed.wait()

    async def drain(self) -> None:
        await self.wait_sent(self.submitted)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
