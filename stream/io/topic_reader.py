"""Reading a topic from its beginning to its end offsets at call time, without a consumer group.

Used where a worker rebuilds something from a topic before going live: the catch-up replay of
the input topics (``stream.service.catchup``) and the snapshot scan (``stream.service.snapshots``).
"""

from __future__ import annotations

from aiokafka import TopicPartition

from stream.io.kafka import new_consumer


async def read_to_end(bootstrap: str, topic: str, on_batch, **consumer_opts) -> int:
    """Read ``topic`` from the beginning to its end offsets (at call time); return the records read.

    ``on_batch(messages)`` is awaited for each fetched batch, in offset order per partition;
    ``consumer_opts`` go to the consumer (default: 8 MiB per partition fetch).
    """
    opts = {"max_partition_fetch_bytes": 8 * 1024 * 1024, **consumer_opts}
    c = new_consumer(bootstrap, auto_offset_reset="earliest", **opts)
    await c.start()
    n = 0
    try:
        if topic not in await c.topics():  # also refreshes the metadata
            return 0
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return 0
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            batch = await c.getmany(*todo, timeout_ms=1000, max_records=20000)
            for tp, msgs in batch.items():
                msgs = [m for m in msgs if m.offset < ends[tp]]
                if msgs:
                    await on_batch(msgs)
                    n += len(msgs)
            for tp in list(todo):
                if await c.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await c.stop()
    return n
