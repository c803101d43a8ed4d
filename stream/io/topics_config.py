"""Names and specs of every Technic topic, declared once.

Why a separate module: the broker launcher (which creates topics explicitly, because
the embedded broker auto-creates topics with a single partition), the Faust topic
declarations (`stream/topics.py`) and the CLIs all need the same names, partition
counts and configs. aiokafka is imported lazily, only by :func:`create_topics`, which
works against the embedded broker and a real cluster alike.

Names are ``<prefix><kind>`` with the prefix from ``TECHNIC_TOPIC_PREFIX`` (default
``"technic."``), so two demos can share one broker. The partition count defaults to 1
(the embedded broker is a single-worker convenience) and can be raised with
``TECHNIC_PARTITIONS`` or the ``partitions`` argument of :func:`topic_specs`.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field, replace
from typing import Iterable

from technic.errors import TechnicError

DEFAULT_PREFIX = "technic."
DAY_MS = 24 * 3600 * 1000

#: Topic kinds, i.e. topic names without the prefix.
BARS = "bars"
FUNDAMENTALS = "fundamentals"
ALT = "alt"
SCORES = "scores"
EXPLANATIONS = "explanations"  # top feature contributions of scores sent with --explain deferred
ALERTS = "alerts"
DEADLETTER = "deadletter"
CONTROL = "control"
FEATURES = "features"    # internal: per-symbol stage -> scoring stage (rows keyed by timestamp + watermarks)
SNAPSHOTS = "snapshots"  # internal: per-symbol stage checkpoints (state + input offsets), compacted

KINDS = (BARS, FUNDAMENTALS, ALT, SCORES, EXPLANATIONS, ALERTS, DEADLETTER, CONTROL, FEATURES, SNAPSHOTS)


class TopicCreationError(TechnicError):
    """The cluster refused to create a topic (other than "already exists")."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its full name, partition count, broker configs, key and payload schema.

    ``schema`` is the file name in ``schemas/`` validated at the stream edge;
    ``key`` describes what the message key is (for humans and docs).
    """

    kind: str
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    key: str = "symbol"
    schema: str = ""
    replication_factor: int = 1


def topic_prefix() -> str:
    """Topic name prefix from ``TECHNIC_TOPIC_PREFIX`` (default ``"technic."``)."""
    return os.environ.get("TECHNIC_TOPIC_PREFIX", DEFAULT_PREFIX)


def topic_name(kind: str, prefix: str | None = None) -> str:
    """Full topic name for a kind, e.g. ``topic_name("bars") == "technic.bars"``."""
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}; expected one of {KINDS}")
    return (topic_prefix() if prefix is None else prefix) + kind


def default_partitions() -> int:
    """Partition count from ``TECHNIC_PARTITIONS`` (default 1, right for the embedded broker)."""
    raw = os.environ.get("TECHNIC_PARTITIONS", "1")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"TECHNIC_PARTITIONS must be a positive integer, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"TECHNIC_PARTITIONS must be >= 1, got {n}")
    return n


def _retention(days: float) -> dict[str, str]:
    return {"cleanup.policy": "delete", "retention.ms": str(int(days * DAY_MS))}


# kind -> (configs, key description, schema file, partitioned?)
# Single-partition topics: control is a broadcast (every worker must see every
# message in order), alerts and dead letters are low volume and read by humans;
# features and snapshots are the split mode's internal topics (see stream.stages).
_TABLE: dict[str, tuple[dict[str, str], str, str, bool]] = {
    BARS: (_retention(7), "symbol", "bar.json", True),
    FUNDAMENTALS: (_retention(30), "symbol", "fundamental.json", True),
    ALT: (_retention(30), "symbol", "alt.json", True),
    SCORES: (_retention(7), "symbol (value key is symbol|ts|model_version)", "score.json", True),
    EXPLANATIONS: (_retention(7), "symbol (value key is symbol|ts|model_version, as its score's)",
                   "explanation.json", True),
    ALERTS: (_retention(30), "alert type", "alert.json", False),
    DEADLETTER: (_retention(30), "source topic", "deadletter.json", False),
    CONTROL: (_retention(30), "none", "control.json", False),
    # one partition: the scoring stage is one ordered consumer of every timestamp (the per-symbol
    # market state it keeps is a fold over timestamps in order); watermarks follow their rows
    FEATURES: (_retention(7), "bar timestamp (watermarks: 'wm')", "", False),
    # latest snapshot per bars partition survives compaction (short segments so it actually compacts)
    SNAPSHOTS: ({"cleanup.policy": "compact", "segment.ms": "60000", "min.cleanable.dirty.ratio": "0.1",
                 "max.message.bytes": str(32 * 1024 * 1024)},  # a partition's snapshot: ~22 KiB per symbol
                "bars partition", "", False),
}


def topic_specs(partitions: int | None = None, prefix: str | None = None) -> list[TopicSpec]:
    """Specs of all topics; ``partitions`` applies to the symbol-keyed topics.

    Alerts, dead letters and control always have one partition (ordering matters
    more than throughput there).
    """
    n = default_partitions() if partitions is None else int(partitions)
    if n < 1:
        raise ValueError(f"partitions must be >= 1, got {n}")
    specs = []
    for kind in KINDS:
        configs, key, schema, partitioned = _TABLE[kind]
        specs.append(TopicSpec(kind=kind, name=topic_name(kind, prefix),
                               partitions=n if partitioned else 1,
                               configs=dict(configs), key=key, schema=schema))
    return specs


def spec_for(kind: str, partitions: int | None = None, prefix: str | None = None) -> TopicSpec:
    """The spec of one topic kind."""
    for spec in topic_specs(partitions, prefix):
        if spec.kind == kind:
            return spec
    raise ValueError(f"unknown topic kind {kind!r}; expected one of {KINDS}")


def with_partitions(specs: list[TopicSpec], partitions: int) -> list[TopicSpec]:
    """Copy of ``specs`` with the partitioned topics set to ``partitions``."""
    return [replace(s, partitions=partitions) if _TABLE[s.kind][3] else s for s in specs]


async def create_topics_async(bootstrap: str, specs: Iterable) -> list[str]:
    """Create topics from specs (objects with name, partitions, configs); return names created.

    Topics that already exist are left alone (idempotent) provided their partition
    count matches the spec; a mismatch (e.g. a topic auto-created with 1 partition by an
    early producer) raises, because keyed routing and table recovery depend on it.
    Any other broker error raises too.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    specs = list(specs)
    from stream.io.kafka import client_kwargs
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        have = [s for s in specs if s.name in existing]
        if have:
            wrong = []
            for desc in await admin.describe_topics([s.name for s in have]):
                want = next(int(s.partitions) for s in have if s.name == desc["topic"])
                got = len(desc.get("partitions") or [])
                if got != want:
                    wrong.append(f"{desc['topic']} has {got} partitions, spec wants {want}")
            if wrong:
                raise TopicCreationError("existing topics do not match their specs: " + "; ".join(wrong)
                                         + " (delete and recreate them, or change the partition count)")
        new = [NewTopic(s.name, int(s.partitions), int(getattr(s, "replication_factor", 1)),
                        topic_configs=dict(getattr(s, "configs", {}) or {}))
               for s in specs if s.name not in existing]
        if not new:
            return []
        resp = await admin.create_topics(new)
        created, errors = [], []
        for err in resp.topic_errors:
            name, code, msg = err[0], err[1], (err[2] if len(err) > 2 else None)
            if code == 0:
                created.append(name)
            elif code != 36:  # 36 = TOPIC_ALREADY_EXISTS (a racing creator)
                errors.append(f"{name}: error {code} {msg or ''}".strip())
        if errors:
            raise TopicCreationError("could not create topics: " + "; ".join(errors))
        return created
    finally:
        await admin.close()


def create_topics(bootstrap: str, specs: Iterable) -> list[str]:
    """Synchronous :func:`create_topics_async` for CLIs and tests."""
    return asyncio.run(create_topics_async(bootstrap, specs))


#: Specs evaluated at import time with the environment of that moment.
TOPIC_SPECS: list[TopicSpec] = topic_specs()

BARS_TOPIC = topic_name(BARS)
FUNDAMENTALS_TOPIC = topic_name(FUNDAMENTALS)
ALT_TOPIC = topic_name(ALT)
SCORES_TOPIC = topic_name(SCORES)
ALERTS_TOPIC = topic_name(ALERTS)
DEADLETTER_TOPIC = topic_name(DEADLETTER)
CONTROL_TOPIC = topic_name(CONTROL)
