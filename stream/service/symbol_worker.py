"""`technic-stream worker --role symbol`: the per-symbol stage over its input partitions.

1. **Restore.** Reads the snapshot topic, loads the latest snapshot of each owned partition
   (``stream.stages.checkpoint``) and takes the input offsets it reflects (0 without one).
2. **Side inputs first.** Reads the owned partitions of fundamentals and alt from those offsets
   to their current end (Kafka has no order across topics; reference data must not race the
   bars it applies to), then
3. **Live.** Consumes bars, fundamentals and alt of the owned partitions from the snapshot's
   offsets (side topics before bars within a fetched batch), emits feature rows and
   watermarks, a heartbeat watermark every 0.25 s (``caught_up`` once at the end of its input),
   and a snapshot of every owned partition every ``checkpoint_s`` seconds with progress, always
   *after* the rows it covers were acknowledged. SIGTERM writes a last snapshot.

Rows re-emitted after a restart (the bars between the snapshot and the crash) are identical
and the scoring stage drops or overwrites them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import TopicPartition

from stream.io.fetch_pacing import fetch_batch
from stream.io.topics_config import topic_name
from stream.service.assignment import assigned
from stream.service.checkpoint_writer import CheckpointWriter
from stream.service.role_runtime import role_clients, run_until_signal
from stream.service.snapshots import scan_snapshots
from stream.service.warmup import warm_process
from stream.service.web import serve_health
from stream.stages.checkpoint import SIDE_KINDS, capture, decode_snapshot, restore
from stream.stages.symbol import SymbolStage

log = logging.getLogger("technic.worker")


async def latest_snapshots(bootstrap: str, partitions) -> dict[int, dict]:
    """The last snapshot per owned partition on the snapshot topic."""
    return {int(v["partition"]): v for v in await scan_snapshots(bootstrap, decode_snapshot)
            if int(v["partition"]) in partitions}


class SymbolWorker:
    def __init__(self, settings, sectors=None, config=None, member=None, partitions=None, checkpoint_s: float = 5.0):
        self.settings = settings
        self.sectors, self.config = sectors, config
        self.member, self.requested = member, partitions
        self.checkpoint_s = checkpoint_s
        self.stage: SymbolStage | None = None
        self.mine: list[int] = []
        self.pos: dict[tuple[str, int], int] = {}     # (kind, partition) -> next offset to read
        self.restore_s = None
        self.restored_from: dict[int, dict] = {}
        self.snapshots_written = 0
        self.caught_up = False
        self.stop = asyncio.Event()

    def status(self) -> dict:
        s = self.stage.status() if self.stage else {}
        return {"role": "symbol", "partitions": self.mine, "restore_s": self.restore_s,
                "restored_from": self.restored_from, "snapshots_written": self.snapshots_written,
                "caught_up": self.caught_up, **s}

    async def run(self) -> None:
        boot = self.settings.bootstrap
        runner = None
        async with role_clients(boot) as (c, send, snap_send):
            try:
                await c.topics()
                n = len(c.partitions_for_topic(topic_name("bars")) or [0])
                self.mine = assigned(n, self.member, self.requested)
                self.stage = SymbolStage(self.sectors, self.config, n_partitions=n)
                t0 = time.perf_counter()
                snaps = await latest_snapshots(boot, set(self.mine))
                for p in self.mine:
                    offs = restore(self.stage, snaps[p]) if p in snaps else {k: 0 for k in SIDE_KINDS}
                    for k in SIDE_KINDS:
                        self.pos[(k, p)] = offs[k]
                    if p in snaps:
                        self.restored_from[p] = snaps[p]["offsets"]
                self.restore_s = round(time.perf_counter() - t0, 3)
                warm_process(self.sectors)
                runner = await serve_health(self.settings.web_bind, self.settings.web_port, self.status)
                log.info("symbol worker: partitions %s of %d, restored %d snapshot(s) in %.3f s", self.mine, n,
                         len(snaps), self.restore_s)
                await self._side_inputs(c, send)
                await self._live(c, send, CheckpointWriter(snap_send))
            finally:
                if runner is not None:
                    await runner.cleanup()

    async def _handle(self, msgs_by_tp, send) -> bool:
        order = {topic_name(k): i for i, k in enumerate(("fundamentals", "alt", "bars"))}
        kinds = {topic_name(k): k for k in SIDE_KINDS}
        outs = []
        now = time.time()
        touched = set()
        for tp in sorted(msgs_by_tp, key=lambda tp: (order[tp.topic], tp.partition)):
            kind = kinds[tp.topic]
            for m in msgs_by_tp[tp]:
                if m.offset < self.pos[(kind, tp.partition)]:
                    continue
                self.pos[(kind, tp.partition)] = m.offset + 1
                if kind == "bars":
                    outs += self.stage.on_bar(m.value, tp.topic, tp.partition, m.offset, now, key=m.key)
                    touched.add(tp.partition)
                elif kind == "fundamentals":
                    outs += self.stage.on_fundamental(m.value, tp.topic, tp.partition, m.offset, key=m.key)
                else:
                    outs += self.stage.on_alt(m.value, tp.topic, tp.partition, m.offset, key=m.key)
        if touched:
            outs += self.stage.watermarks(touched, caught_up=False)
        await send(outs)
        return bool(outs)

    async def _side_inputs(self, c, send) -> None:
        tps = [TopicPartition(topic_name(k), p) for k in ("fundamentals", "alt") for p in self.mine]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, self.pos[(tp.topic.rsplit(".", 1)[-1], tp.partition)])
        ends = await c.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > self.pos[(tp.topic.rsplit(".", 1)[-1], tp.partition)]}
        while todo:
            batch = await c.getmany(*todo, timeout_ms=1000, max_records=20000)
            await self._handle({tp: [m for m in msgs if m.offset < ends[tp]] for tp, msgs in batch.items()}, send)
            for tp in list(todo):
                if await c.position(tp) >= ends[tp]:
                    todo.discard(tp)

    async def _live(self, c, send, writer: CheckpointWriter) -> None:
        tps = [TopicPartition(topic_name(k), p) for k in SIDE_KINDS for p in self.mine]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, self.pos[(tp.topic.rsplit(".", 1)[-1], tp.partition)])
        last_beat = last_snap = time.monotonic()
        snap_pos = dict(self.pos)
        pacer = self.settings.pacer()
        while not self.stop.is_set():
            batch = await fetch_batch(c, pacer, self.settings.batch_max, tps)
            if batch:
                await self._handle(batch, send)
            now = time.monotonic()
            if now - last_beat >= 0.25 or not batch:
                hw = [(tp, c.highwater(tp)) for tp in tps]
                self.caught_up = all(h is not None and self.pos[(tp.topic.rsplit(".", 1)[-1], tp.partition)] >= h
                                     for tp, h in hw)
                if now - last_beat >= 0.25:
                    await send(self.stage.watermarks(self.mine, caught_up=self.caught_up))
                    last_beat = now
            writer.check()
            if now - last_snap >= self.checkpoint_s and self.pos != snap_pos and not writer.busy:
                writer.start(self._capture())   # written in the background
                snap_pos, last_snap = dict(self.pos), now
            self.snapshots_written = writer.written
        await writer.drain()
        if self.pos != snap_pos:
            await writer.write_now(self._capture())
        self.snapshots_written = writer.written

    def _capture(self) -> list:
        """Snapshots of every owned partition, captured now (its rows were already acknowledged by
        the sends above); builders for ``CheckpointWriter``."""
        return [capture(self.stage, p, {k: self.pos[(k, p)] for k in SIDE_KINDS}) for p in self.mine]


async def serve_symbol_worker(settings, **kw) -> None:
    await run_until_signal(SymbolWorker(settings, **kw), "symbol")
