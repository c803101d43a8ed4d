"""`technic-stream worker --role scoring`: the scoring stage over ``technic.features``.

1. **Restore.** Reads the snapshot topic and loads the latest scoring snapshot (key ``scoring``,
   ``stream.stages.scoring_checkpoint``): the market state of every symbol, the history ring, the
   open timestamps' rows, the watermarks and the last closed timestamp, with the features offsets
   they reflect. Without one (or with one this registry cannot take: another feature registry or
   format, logged) it reads the features topic from its beginning. Then it warms up (compiled
   kernels, one throwaway prediction) so the first live timestamp costs what later ones do.
2. **Live.** One ordered consumer of the features topic from those offsets (and of
   ``technic.control`` from its end: model promotions / reloads by command, as in the one-process
   mode; bad commands are dead-lettered), paced (``stream.io.fetch_pacing``); every handled
   batch's outputs (scores, alerts) are acknowledged before the next batch. With ``--explain
   deferred`` the explanations of the scored timestamps then follow in the background
   (``stream.service.explainer``). Every ``checkpoint_s`` seconds with progress, and on SIGTERM,
   it captures a snapshot, always *after* the scores of the timestamps it has closed were
   acknowledged, so a snapshot never covers an unsent score; the record is built and sent in the
   background (``stream.service.checkpoint_writer``), after those timestamps' explanations.

After a crash the records after the snapshot are read again: rows of timestamps the snapshot had
already closed are dropped, the others rebuild the open timestamps exactly, and the timestamps
closed between the snapshot and the crash are scored again with identical values (a score is a
pure function of model version and bars up to t; consumers de-duplicate on symbol|ts|model_version).
Recovery time is bounded by the checkpoint interval, not by the features topic. The registry is
polled for promoted models every 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import TopicPartition

from stream.io.fetch_pacing import fetch_batch
from stream.io.output import OutputSender
from stream.io.topics_config import topic_name
from stream.service.checkpoint_writer import CheckpointWriter
from stream.service.explainer import Explainer
from stream.service.role_runtime import role_clients, run_until_signal
from stream.service.snapshots import scan_snapshots
from stream.service.warmup import warm_process
from stream.service.web import serve_health
from stream.stages import scoring_checkpoint
from stream.stages.scoring import ScoringStage

log = logging.getLogger("technic.worker")


class ScoringWorker:
    def __init__(self, settings, stage: ScoringStage, checkpoint_s: float | None = 5.0, models_poll_s: float = 2.0):
        self.settings, self.stage = settings, stage
        self.checkpoint_s = checkpoint_s          # None: no snapshots (and no restore)
        self.models_poll_s = models_poll_s
        self.pos: dict[int, int] = {}             # features partition -> next offset to read
        self.restore_s = None
        self.restored_from: dict[int, int] | None = None
        self.writer: CheckpointWriter | None = None   # created with the snapshot sender
        self.stop = asyncio.Event()

    def status(self) -> dict:
        return {"role": "scoring", "restore_s": self.restore_s, "restored_from": self.restored_from,
                "snapshots_written": self.writer.written if self.writer else 0, **self.stage.status()}

    async def _restore(self) -> dict[int, int]:
        t0 = time.perf_counter()
        offsets: dict[int, int] = {}
        if self.checkpoint_s is not None:
            snaps = await scan_snapshots(self.settings.bootstrap, scoring_checkpoint.decode)
            if snaps:
                try:
                    offsets = self.stage.restore(snaps[-1])
                    self.restored_from = offsets
                except ValueError as e:
                    if self.stage.engine.slots:   # failed halfway: nothing safe to go on with
                        raise
                    log.warning("scoring snapshot not restored (%s): replaying the features topic from its "
                                "beginning", e)
        self.restore_s = round(time.perf_counter() - t0, 3)
        log.info("scoring worker: restored %s in %.3f s", offsets or "nothing", self.restore_s)
        return offsets

    async def run(self) -> None:
        runner = None
        async with role_clients(self.settings.bootstrap) as (c, send, snap_send):
            try:
                offsets = await self._restore()
                warm_process(self.stage.engine.sectors, self.stage.models.current, self.stage.cfg.top_k)
                name, control = topic_name("features"), topic_name("control")
                await c.topics()
                tps = [TopicPartition(name, q) for q in sorted(c.partitions_for_topic(name) or [0])]
                ctl = [TopicPartition(control, q) for q in sorted(c.partitions_for_topic(control) or [])]
                c.assign(tps + ctl)
                for tp in tps:
                    if tp.partition in offsets:
                        c.seek(tp, offsets[tp.partition])
                    else:
                        await c.seek_to_beginning(tp)
                    self.pos[tp.partition] = offsets.get(tp.partition, 0)
                for tp in ctl:   # past commands are history: the registry says what is promoted
                    await c.seek_to_end(tp)
                    await c.position(tp)   # resolved now: a command sent after /health answers is read
                runner = await serve_health(self.settings.web_bind, self.settings.web_port, self.status)
                self.writer = CheckpointWriter(snap_send)
                await self._live(c, send, self.writer)
            finally:
                if runner is not None:
                    await runner.cleanup()

    async def _live(self, c, send, writer: CheckpointWriter) -> None:
        stage, control = self.stage, topic_name("control")
        explainer = Explainer(OutputSender(self.settings.bootstrap)) if stage.deferred is not None else None
        pacer, last_poll, last_snap = self.settings.pacer(), time.monotonic(), time.monotonic()
        snapped = (dict(self.pos), stage.last_closed)
        try:
            while not self.stop.is_set():
                batch = await fetch_batch(c, pacer, self.settings.batch_max)
                now = time.time()
                outs = []
                for tp in sorted(batch):
                    if tp.topic == control:
                        for m in batch[tp]:
                            outs += stage.on_control(m.value, tp.topic, tp.partition, m.offset)
                        continue
                    for m in batch[tp]:
                        if m.offset < self.pos.get(tp.partition, 0):
                            continue
                        self.pos[tp.partition] = m.offset + 1
                        outs += stage.on_record(m.value, tp.topic, tp.partition, m.offset, None)
                outs += stage.poll(now)
                await send(outs)            # acknowledged: the state below covers only sent scores
                if explainer is not None:   # their explanations follow in the background
                    explainer.submit(stage.deferred_jobs())
                    explainer.check()
                mono = time.monotonic()
                writer.check()
                if (self.checkpoint_s is not None and mono - last_snap >= self.checkpoint_s
                        and (dict(self.pos), stage.last_closed) != snapped and not writer.busy):
                    after = explainer.wait_sent(explainer.submitted) if explainer is not None else None
                    writer.start([stage.capture(dict(self.pos))], after)   # written in the background
                    snapped, last_snap = (dict(self.pos), stage.last_closed), mono
                if mono - last_poll >= self.models_poll_s:
                    last_poll = mono
                    try:
                        stage.models.poll_registry()
                    except Exception as e:  # a broken registry must not stop scoring with the current model
                        log.warning("registry poll failed: %s", e)
            if explainer is not None:
                await explainer.drain()
            await writer.drain()
            if self.checkpoint_s is not None and (dict(self.pos), stage.last_closed) != snapped:
                await writer.write_now([stage.capture(dict(self.pos))])
        finally:
            if explainer is not None:
                await explainer.close()
                await explainer.send.close()


async def serve_scoring_worker(settings, stage: ScoringStage, checkpoint_s: float | None = 5.0,
                               models_poll_s: float = 2.0) -> None:
    await run_until_signal(ScoringWorker(settings, stage, checkpoint_s, models_poll_s), "scoring")
