"""`technic-stream tail`: print a topic's records, pretty or as JSON lines."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import TopicPartition

from technic.errors import TechnicError

from stream.io.kafka import new_consumer
from stream.io.topics_config import KINDS, topic_name


def _pretty(kind: str, v: dict) -> str:
    if kind == "scores":
        s = " ".join(f"{h}={x:+.4f}" for h, x in v.get("scores", {}).items())
        top = ", ".join(f"{c['feature']}({c['contribution']:+.4f})" for c in v.get("top_contributions", [])[:3])
        return (f"{v['ts']} {v['symbol']:<6} {s} pct={v['percentile']:.2f} rank={v['rank']}/{v['universe_size']} "
                f"model={v['model_version']} [{top}]")
    if kind == "alerts":
        return f"{v['ts']} {v['severity'].upper():<8} {v['type']:<16} {v.get('symbol', '')} {v['message']}"
    if kind == "deadletter":
        return f"{v['received_at']} {v['reason_code']:<12} {v['source_topic']}[{v['partition']}]@{v['offset']}: {v['reason']}"
    return orjson.dumps(v).decode()


async def tail(bootstrap: str, topic: str, *, as_json=False, from_beginning=False, limit=None, idle_s=None,
               out=print, raw=None) -> int:
    """Print (``out``) or collect (``raw(dict)``) records; stop after ``limit`` or ``idle_s``."""
    kind = topic if topic in KINDS else topic.rsplit(".", 1)[-1]
    name = topic_name(topic) if topic in KINDS else topic
    c = new_consumer(bootstrap)
    await c.start()
    n = 0
    try:
        await c.topics()
        tps = [TopicPartition(name, p) for p in sorted(c.partitions_for_topic(name) or [])]
        if not tps:
            raise TechnicError(f"topic {topic!r}: no topic {name!r} on {bootstrap} (give a kind: "
                               f"{', '.join(KINDS)}, or an existing topic name)")
        c.assign(tps)
        if from_beginning:
            await c.seek_to_beginning(*tps)
        else:
            await c.seek_to_end(*tps)
        last = time.time()
        while limit is None or n < limit:
            batch = await c.getmany(timeout_ms=500, max_records=1000)
            if not batch:
                if idle_s is not None and time.time() - last > idle_s:
                    break
                continue
            last = time.time()
            for msgs in batch.values():
                for m in msgs:
                    try:
                        v = orjson.loads(m.value)
                        if raw is not None:
                            raw(v)
                            n += 1
                            continue
                        out(orjson.dumps(v).decode() if as_json else _pretty(kind, v))
                    except Exception:
                        out(repr(m.value[:200]))
                    n += 1
    except asyncio.CancelledError:
        pass
    finally:
        await c.stop()
    return n
