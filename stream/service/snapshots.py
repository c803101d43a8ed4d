"""Reading the snapshot topic (``technic.snapshots``): every record one decoder accepts, in order.

The topic is compacted and holds two kinds of records: one per bars partition (the per-symbol
stage, ``stream.stages.checkpoint``) and one keyed ``scoring`` (``stream.stages.scoring_checkpoint``).
Each reader passes the decoder of its kind; a record the decoder rejects (another kind, a
tombstone) is skipped. Reads up to the end offsets seen at the start.
"""

from __future__ import annotations

from typing import Callable

from aiokafka import TopicPartition

from stream.io.kafka import new_consumer
from stream.io.topics_config import topic_name

SNAPSHOT_MAX_BYTES = 32 * 1024 * 1024


async def scan_snapshots(bootstrap: str, decode: Callable[[bytes], dict | None]) -> list[dict]:
    """The decoded records of the snapshot topic, oldest first (the last one per key is the latest)."""
    name = topic_name("snapshots")
    c = new_consumer(bootstrap, auto_offset_reset="earliest", max_partition_fetch_bytes=SNAPSHOT_MAX_BYTES,
                     fetch_max_bytes=SNAPSHOT_MAX_BYTES)
    await c.start()
    out: list[dict] = []
    try:
        if name not in await c.topics():
            return out
        tps = [TopicPartition(name, q) for q in sorted(c.partitions_for_topic(name) or [])]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            batch = await c.getmany(*todo, timeout_ms=1000)
            for tp, msgs in batch.items():
                for m in msgs:
                    v = decode(m.value) if m.offset < ends[tp] else None
                    if v is not None:
                        out.append(v)
            for tp in list(todo):
                if await c.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await c.stop()
    return out
