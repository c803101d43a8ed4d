"""Output records: topic names per kind, and the partition ``send_batched`` picks for a key
against aiokafka's own default partitioner (the Java client's murmur2 rule)."""

import asyncio
import random

from aiokafka.partitioner import DefaultPartitioner

from stream.io.output import Output, OutputSender, key_hash, send_batched
from stream.io.topics_config import topic_name


def test_key_hash_routes_like_the_default_partitioner():
    rng = random.Random(5)
    part = DefaultPartitioner()
    keys = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 24))) for _ in range(2000)]
    keys += [f"S{i:03d}".encode() for i in range(600)] * 2            # repeated: served from the cache
    for key in keys:
        n = rng.randint(1, 12)
        parts = list(range(n))
        assert parts[key_hash(key) % n] == part(key, parts, parts)


class _Batch:
    def __init__(self, cap):
        self.recs, self.cap = [], cap

    def append(self, key, value, timestamp):
        if len(self.recs) >= self.cap:
            return None
        self.recs.append((key, value))
        return object()

    def record_count(self):
        return len(self.recs)


class _Producer:
    """What send_batched uses of an AIOKafkaProducer; batches of at most 3 records."""

    def __init__(self, n):
        self.n, self.sent = n, []

    async def partitions_for(self, topic):
        return set(range(self.n))

    def create_batch(self):
        return _Batch(3)

    async def send_batch(self, batch, topic, partition):
        self.sent += [(topic, partition, k, v) for k, v in batch.recs]
        return asyncio.sleep(0)

    async def send(self, topic, key, value, partition):
        self.sent.append((topic, partition, key, value))
        return asyncio.sleep(0)


def test_send_batched_keeps_key_partition_and_order_within_each_partition():
    part = DefaultPartitioner()
    records = [("t.a", f"K{i % 17}".encode(), f"{i}".encode()) for i in range(100)]
    records += [("t.b", f"K{i % 5}".encode(), f"b{i}".encode()) for i in range(20)]
    prod = _Producer(6)

    async def go():
        futs = await send_batched(prod, records)
        await asyncio.gather(*futs)
    asyncio.run(go())
    assert sorted(prod.sent, key=lambda r: (r[0], r[3])) == sorted(
        [(t, part(k, list(range(6)), list(range(6))), k, v) for t, k, v in records], key=lambda r: (r[0], r[3]))
    for topic in ("t.a", "t.b"):
        for q in range(6):
            got = [v for t, p, _, v in prod.sent if t == topic and p == q]
            assert got == [v for t, k, v in records if t == topic and part(k, list(range(6)), list(range(6))) == q]


def test_records_name_each_kind_and_add_the_retrain_request():
    outs = [Output("scores", b"A", {"x": 1}), Output("alerts", b"drift", {"type": "retrain_requested",
                                                                           "emit_time": "t", "message": "m"}),
            Output("scores", b"B", {"x": float("nan")}), Output("deadletter", None, {"y": 2})]
    recs = OutputSender("unused:1").records(outs)
    assert [r[0] for r in recs] == [topic_name(k) for k in ("scores", "alerts", "scores", "deadletter", "control")]
    assert recs[2][2] == b'{"x":null}' and recs[0][1] == b"A" and recs[3][1] is None
