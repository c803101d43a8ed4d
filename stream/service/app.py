"""The faust.App and its topics: declarations only.

The broker address is only known at run time (embedded broker or
``TECHNIC_BOOTSTRAP``), so the app is built by a factory instead of at import.
All topics use raw bytes: records are decoded and validated by
``stream.io.codecs`` inside the agents, so a malformed payload becomes a
dead-letter record instead of a deserialization crash in Faust.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faust

from stream.io.kafka import faust_credentials
from stream.io.topics_config import topic_specs


@dataclass
class WorkerSettings:
    bootstrap: str
    app_id: str = "technic-worker"
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    datadir: str = ".technic/worker"
    partitions: int | None = None
    batch_max: int = 5000          # records per micro-batch
    batch_within_s: float = 0.05   # max wait to fill a micro-batch
    # live ingest: "direct" = stream.service.direct, a group-less aiokafka consumer continuing exactly
    # where the catch-up stopped, without Faust's consumer (one worker; the faster live path, figures
    # in bench/results/stream.md); "faust" = Faust agents in the consumer group (partition
    # assignment across several workers on a real cluster)
    ingest: str = "direct"
    # pacing of the group-less consumers (stream.io.fetch_pacing): pause after an empty fetch while
    # records came within the last second (the embedded broker answers at once: no long poll) ...
    idle_sleep_s: float = 0.004
    idle_max_s: float = 0.05       # ... doubling up to this once the feed is quiet

    def pacer(self):
        from stream.io.fetch_pacing import FetchPacer
        return FetchPacer(hot_sleep_s=self.idle_sleep_s, cold_sleep_s=self.idle_max_s)


def create_app(s: WorkerSettings) -> tuple[faust.App, dict[str, faust.types.TopicT]]:
    """The Faust app (at-least-once, settings that work on the embedded broker) and topics by kind."""
    Path(s.datadir).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        s.app_id,
        broker=f"kafka://{s.bootstrap}",
        store="memory://",
        datadir=s.datadir,
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=20,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=True,
        web_bind=s.web_bind,
        web_port=s.web_port,
        stream_buffer_maxsize=max(4096, s.batch_max * 2),
        broker_credentials=faust_credentials(),
        producer_linger_ms=5,
        producer_max_batch_size=512 * 1024,
        producer_acks=-1,
    )
    topics = {spec.kind: app.topic(spec.name, key_serializer="raw", value_serializer="raw",
                                   partitions=spec.partitions, internal=False)
              for spec in topic_specs(s.partitions)}
    return app, topics
