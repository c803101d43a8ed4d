"""Embedded broker: start, explicit topic creation, produce/consume round trip, graceful restart.

The restart test starts its own broker (the session one is shared); everything else uses
the ``broker`` fixture, which honours ``TECHNIC_BOOTSTRAP``.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from stream.io.broker import (EmbeddedBroker, BrokerError, ensure_broker, resolve_bootstrap)
from stream.io.topics_config import TopicCreationError, TopicSpec, topic_specs

pytestmark = pytest.mark.broker
N = 1000


async def _produce(bootstrap, topic, n, start=0, partitions=1):
    from aiokafka import AIOKafkaProducer
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await p.start()
    try:
        batch = [p.send(topic, value=f'{{"i": {i}}}'.encode(), key=f"S{i % 7}".encode(),
                        partition=i % partitions) for i in range(start, start + n)]
        for fut in await asyncio.gather(*batch):
            await fut
    finally:
        await p.stop()


async def _consume(bootstrap, topic, n, timeout_s=20.0):
    from aiokafka import AIOKafkaConsumer
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, group_id=None)
    await c.start()
    out = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(out) < n and loop.time() < deadline:
            got = await c.getmany(timeout_ms=500)
            for tp, msgs in got.items():
                out.extend((tp.partition, m.offset, m.value) for m in msgs)
    finally:
        await c.stop()
    return out


async def _partitions(bootstrap, topic):
    from aiokafka.admin import AIOKafkaAdminClient
    a = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await a.start()
    try:
        (desc,) = await a.describe_topics([topic])
        return len(desc["partitions"])
    finally:
        await a.close()


def test_create_topics_with_partitions(broker, unique_prefix):
    specs = topic_specs(partitions=3, prefix=unique_prefix)
    created = broker.create_topics(specs)
    assert sorted(created) == sorted(s.name for s in specs)
    assert broker.create_topics(specs) == []  # idempotent
    assert asyncio.run(_partitions(broker.bootstrap, unique_prefix + "bars")) == 3
    assert asyncio.run(_partitions(broker.bootstrap, unique_prefix + "control")) == 1
    with pytest.raises(TopicCreationError, match="spec wants 5"):
        broker.create_topics(topic_specs(partitions=5, prefix=unique_prefix))


def test_round_trip_1000_messages(broker, unique_prefix):
    topic = unique_prefix + "rt"
    broker.create_topics([TopicSpec("bars", topic, 2, {"retention.ms": "3600000"})])
    asyncio.run(_produce(broker.bootstrap, topic, N, partitions=2))
    got = asyncio.run(_consume(broker.bootstrap, topic, N))
    assert len(got) == N
    assert sorted(int(v[6:-1]) for _, _, v in got) == list(range(N))
    for part in (0, 1):
        offsets = [o for p, o, _ in got if p == part]
        assert offsets == list(range(len(offsets)))  # dense, in order


def test_graceful_restart_keeps_messages(tmp_path):
    if resolve_bootstrap():
        pytest.skip("restart needs the embedded broker")
    with EmbeddedBroker(tmp_path / "b") as b:
        port, pid = b.port, b.pid
        b.create_topics([TopicSpec("bars", "keep", 1)])
        asyncio.run(_produce(b.bootstrap, "keep", N))
        b.restart()
        assert b.port == port and b.pid != pid
        got = asyncio.run(_consume(b.bootstrap, "keep", N))
        assert [o for _, o, _ in got] == list(range(N))
        asyncio.run(_produce(b.bootstrap, "keep", 10, start=N))  # offsets continue
        got = asyncio.run(_consume(b.bootstrap, "keep", N + 10))
        assert [o for _, o, _ in got] == list(range(N + 10))
    assert not b.is_running() and b.pid is None


def test_port_clash_is_reported(tmp_path):
    if resolve_bootstrap():
        pytest.skip("needs the embedded broker")
    with EmbeddedBroker(tmp_path / "a") as a:
        clash = EmbeddedBroker(tmp_path / "c", port=a.port, ready_timeout_s=5)
        with pytest.raises(BrokerError) as info:
            clash.start()
        assert "already in use" in str(info.value)
        assert not clash.is_running()


def test_start_failure_reports_log_tail(tmp_path):
    """A corrupt snapshot makes noida-db exit; the error carries the broker's own message."""
    if resolve_bootstrap():
        pytest.skip("needs the embedded broker")
    (tmp_path / "kafka.json").write_text("garbage{")
    b = EmbeddedBroker(tmp_path, ready_timeout_s=10)
    with pytest.raises(BrokerError) as info:
        b.start()
    msg = str(info.value)
    assert "log tail" in msg and "snapshot" in msg
    assert not b.is_running()


def test_second_broker_on_same_data_dir_refused_and_cli_attaches(tmp_path, monkeypatch):
    if resolve_bootstrap():
        pytest.skip("needs the embedded broker")
    with EmbeddedBroker(tmp_path) as b:
        with pytest.raises(BrokerError, match="already runs"):
            EmbeddedBroker(tmp_path).start()
        assert ensure_broker(tmp_path) == (b.bootstrap, None)  # attaches, starts nothing
    assert not (tmp_path / "broker.json").exists()
    bootstrap, started = ensure_broker(tmp_path)
    try:
        assert started is not None and started.is_running() and bootstrap == started.bootstrap
    finally:
        started.stop()


def test_ensure_broker_prefers_external(monkeypatch, tmp_path):
    monkeypatch.setenv("TECHNIC_BOOTSTRAP", "kafka1:9092")
    assert resolve_bootstrap() == "kafka1:9092"
    assert resolve_bootstrap("flag:1") == "flag:1"
    assert ensure_broker(tmp_path) == ("kafka1:9092", None)
    assert not os.listdir(tmp_path)  # nothing started
    monkeypatch.delenv("TECHNIC_BOOTSTRAP")
    assert resolve_bootstrap() is None
