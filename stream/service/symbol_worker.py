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

Partitions come from ``--member i/N`` / ``--partitions`` (static: the embedded broker) or from a
consumer group (``--group``, Apache Kafka): the range assignor gives a member the same partitions of
bars, fundamentals and alt; a revoked partition's snapshot is written (after the batch being sent)
before the rebalance completes, and an assigned one is restored from its latest snapshot, its side
inputs read to the end, and consumed from the snapshot's offsets (``technic-stream parity --group
--chaos join``). Snapshots are captured between batches and written in the background
(``stream.service.checkpoint_writer``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from stream.io.fetch_pacing import fetch_batch
from stream.io.kafka import new_consumer
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
    def __init__(self, settings, sectors=None, config=None, member=None, partitions=None, checkpoint_s: float = 5.0,
                 group: str | None = None):
        self.settings = settings
        self.group = group
        self.sectors, self.config = sectors, config
        self.member, self.requested = member, partitions
        self.checkpoint_s = checkpoint_s
        self.stage: SymbolStage | None = None
        self.mine: list[int] = []
        self.pos: dict[tuple[str, int], int] = {}     # (kind, partition) -> next offset to read
        self.restore_s = None
        self.restored_from: dict[int, dict] = {}
        self.writer: CheckpointWriter | None = None   # created with the snapshot sender
        self.caught_up = False
        self.stop = asyncio.Event()
        self.handling = asyncio.Lock()   # held while a batch is handled and its outputs sent

    def status(self) -> dict:
        s = self.stage.status() if self.stage else {}
        return {"role": "symbol", "partitions": self.mine, "restore_s": self.restore_s,
                "restored_from": self.restored_from, "snapshots_written": self.writer.written if self.writer else 0,
                "caught_up": self.caught_up, **s}

    async def run(self) -> None:
        boot = self.settings.bootstrap
        runner = None
        async with role_clients(boot) as (c, send, snap_send):
            try:
                await c.topics()
                n = len(c.partitions_for_topic(topic_name("bars")) or [0])
                self.stage = SymbolStage(self.sectors, self.config, n_partitions=n)
                writer = self.writer = CheckpointWriter(snap_send)
                if self.group is not None:   # partitions come and go with the group's rebalances
                    warm_process(self.sectors)
                    runner = await serve_health(self.settings.web_bind, self.settings.web_port, self.status)
                    await self._run_group(c, send, writer)
                    return
                t0 = time.perf_counter()
                n_snaps = await self._restore(assigned(n, self.member, self.requested))
                self.restore_s = round(time.perf_counter() - t0, 3)
                warm_process(self.sectors)
                runner = await serve_health(self.settings.web_bind, self.settings.web_port, self.status)
                log.info("symbol worker: partitions %s of %d, restored %d snapshot(s) in %.3f s", self.mine, n,
                         n_snaps, self.restore_s)
                await self._side_inputs(c, send, self.mine)
                await self._live(c, send, writer)
            except Exception:
                log.exception("symbol worker failed")   # before the clean-up, which may wait on the broker
                raise
            finally:
                if runner is not None:
                    await runner.cleanup()

    async def _restore(self, parts: list[int]) -> int:
        """Take ``parts``: their latest snapshots restored (else from offset 0); returns how many."""
        snaps = await latest_snapshots(self.settings.bootstrap, set(parts))
        for p in parts:
            offs = restore(self.stage, snaps[p]) if p in snaps else {k: 0 for k in SIDE_KINDS}
            for k in SIDE_KINDS:
                self.pos[(k, p)] = offs[k]
            if p in snaps:
                self.restored_from[p] = snaps[p]["offsets"]
        self.mine = sorted(set(self.mine) | set(parts))
        return len(snaps)

    async def _run_group(self, c, send, writer: CheckpointWriter) -> None:
        """Consumer-group assignment (Apache Kafka): the range assignor gives a member the same partitions
        of bars, fundamentals and alt; on assignment the worker restores those partitions' snapshots and
        reads their side inputs to the end (group-less consumer ``c``), then the group consumer seeks to the
        snapshots' offsets; on revocation it writes their snapshots first, so the next owner resumes
        exactly where this one stopped."""
        worker = self

        class Rebalance(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                parts = sorted({tp.partition for tp in revoked} & set(worker.mine))
                async with worker.handling:   # a batch being sent: its rows go out before the snapshot
                    await self._give(parts)

            async def _give(self, parts):
                if parts:
                    await writer.drain()
                    await writer.write_now(worker._capture(parts))
                    worker.mine = [p for p in worker.mine if p not in parts]
                    log.info("symbol worker: partitions %s revoked, snapshots written", parts)

            async def on_partitions_assigned(self, assigned):
                parts = sorted({tp.partition for tp in assigned} - set(worker.mine))
                t0 = time.perf_counter()
                n_snaps = await worker._restore(parts)
                await worker._side_inputs(c, send, parts)
                for tp in assigned:
                    g.seek(tp, worker.pos[(tp.topic.rsplit(".", 1)[-1], tp.partition)])
                worker.restore_s = round(time.perf_counter() - t0, 3)
                log.info("symbol worker: partitions %s assigned (now %s), restored %d snapshot(s) in %.3f s",
                         parts, worker.mine, n_snaps, worker.restore_s)

        g = new_consumer(self.settings.bootstrap, group_id=self.group, auto_offset_reset="earliest",
                         partition_assignment_strategy=(RangePartitionAssignor,), fetch_max_wait_ms=20,
                         max_partition_fetch_bytes=8 * 1024 * 1024)
        await g.start()
        try:
            g.subscribe([topic_name(k) for k in SIDE_KINDS], listener=Rebalance())
            await self._live(g, send, writer, group=True)
        finally:
            await g.stop()

    async def _handle(self, msgs_by_tp, send) -> bool:
        order = {topic_name(k): i for i, k in enumerate(("fundamentals", "alt", "bars"))}
        kinds = {topic_name(k): k for k in SIDE_KINDS}
        outs = []
        now = time.time()
        touched = set()
        bars = []   # the batch's bars: admitted in order, applied a timestamp at a time (SymbolStage.on_bars)
        for tp in sorted(msgs_by_tp, key=lambda tp: (order[tp.topic], tp.partition)):
            kind = kinds[tp.topic]
            if tp.partition not in self.mine:
                continue
            for m in msgs_by_tp[tp]:
                if m.offset < self.pos[(kind, tp.partition)]:
                    continue
                self.pos[(kind, tp.partition)] = m.offset + 1
                if kind == "bars":
                    bars.append((m.value, tp.topic, tp.partition, m.offset, now, m.key))
                    touched.add(tp.partition)
                elif kind == "fundamentals":
                    outs += self.stage.on_fundamental(m.value, tp.topic, tp.partition, m.offset, key=m.key)
                else:
                    outs += self.stage.on_alt(m.value, tp.topic, tp.partition, m.offset, key=m.key)
        if bars:
            outs += self.stage.on_bars(bars)
        if touched:
            outs += self.stage.watermarks(touched, caught_up=False)
        await send(outs)
        return bool(outs)

    async def _side_inputs(self, c, send, parts) -> None:
        tps = [TopicPartition(topic_name(k), p) for k in ("fundamentals", "alt") for p in parts]
        if not tps:
            return
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

    async def _live(self, c, send, writer: CheckpointWriter, group: bool = False) -> None:
        tps = [TopicPartition(topic_name(k), p) for k in SIDE_KINDS for p in self.mine]
        if not group:
            c.assign(tps)
            for tp in tps:
                c.seek(tp, self.pos[(tp.topic.rsplit(".", 1)[-1], tp.partition)])
        last_beat = last_snap = time.monotonic()
        snap_pos = dict(self.pos)
        pacer = self.settings.pacer()
        while not self.stop.is_set():
            if group:
                tps = sorted(c.assignment())
            batch = await fetch_batch(c, pacer, self.settings.batch_max, None if group else tps)
            if batch:
                async with self.handling:
                    await self._handle(batch, send)
            now = time.monotonic()
            if now - last_beat >= 0.25 or not batch:
                if group:   # the assignment may have changed during the fetch
                    tps = sorted(c.assignment())
                hw = [(tp, c.highwater(tp)) for tp in tps]
                self.caught_up = all(h is not None
                                     and self.pos.get((tp.topic.rsplit(".", 1)[-1], tp.partition), -1) >= h
                                     for tp, h in hw)
                if now - last_beat >= 0.25:
                    await send(self.stage.watermarks(self.mine, caught_up=self.caught_up))
                    last_beat = now
            writer.check()
            if now - last_snap >= self.checkpoint_s and self.pos != snap_pos and not writer.busy:
                writer.start(self._capture())   # written in the background
                snap_pos, last_snap = dict(self.pos), now
        await writer.drain()
        if self.pos != snap_pos:
            await writer.write_now(self._capture())

    def _capture(self, parts=None) -> list:
        """Snapshots of the owned partitions (or ``parts``), captured now (their rows were already
        acknowledged by the sends above); builders for ``CheckpointWriter``."""
        return [capture(self.stage, p, {k: self.pos[(k, p)] for k in SIDE_KINDS})
                for p in (self.mine if parts is None else parts)]


async def serve_symbol_worker(settings, **kw) -> None:
    await run_until_signal(SymbolWorker(settings, **kw), "symbol")
