"""How a group-less consumer waits on the embedded broker: CPU spent vs one-hop latency.

Usage::

    .venv/bin/python bench/fetch_pacing.py [--seconds 4]

The embedded broker (noida-db) answers every fetch at once (no long poll), so aiokafka's fetcher
spins while a consumer is assigned and resumed. One process, one broker: a producer sends one
record every 30-70 ms (a live feed), a consumer loop (each variant below) receives it; per variant
the consumer process's CPU seconds per second (``getrusage``, producer included: it is the same in
every variant) and the one-hop latency (receive wall time - the record's CreateTime; the producer
has no linger). Variants:

* ``spin``: getmany(5 ms) then sleep 20 ms without pausing (the role workers' loop before
  ``stream.io.fetch_pacing``: the fetcher keeps fetching during the sleep);
* ``pause 5/20``: getmany(5 ms), then pause the partitions and sleep 20 ms (the one-process loop before);
* ``pacer`` variants: ``stream.io.fetch_pacing.fetch_batch`` with (wait, hot sleep); the last one
  is the default.

Writes bench/results/fetch_pacing.json and .md. Timing is never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, write_results  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _variant(boot: str, topic: str, kind: str, wait_ms: int, sleep_s: float, seconds: float) -> dict:
    from aiokafka import TopicPartition

    from stream.io.fetch_pacing import FetchPacer, fetch_batch
    from stream.io.kafka import new_consumer, new_producer
    p = new_producer(boot)
    await p.start()
    c = new_consumer(boot, fetch_max_wait_ms=20, auto_offset_reset="latest")
    await c.start()
    tps = [TopicPartition(topic, 0)]
    c.assign(tps)
    await c.seek_to_end(tps[0])
    lat: list[float] = []
    stop = False

    async def produce():
        while not stop:
            await asyncio.sleep(random.uniform(0.03, 0.07))
            await p.send_and_wait(topic, b"x", key=b"k")

    task = asyncio.create_task(produce())
    pacer = FetchPacer(wait_ms=wait_ms, hot_sleep_s=sleep_s)
    c0, t0 = _cpu(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if kind == "pacer":
            batch = await fetch_batch(c, pacer, 1000, tps)
        else:
            batch = await c.getmany(timeout_ms=wait_ms)
            if not batch:
                if kind == "pause":
                    c.pause(*tps)
                await asyncio.sleep(sleep_s)
                if kind == "pause":
                    c.resume(*tps)
        now = time.time() * 1000
        for ms in batch.values():
            lat += [now - m.timestamp for m in ms]
    cpu = (_cpu() - c0) / (time.perf_counter() - t0)
    stop = True
    await task
    await c.stop()
    await p.stop()
    a = np.asarray(lat)
    return {"cpu_s_per_s": cpu, "records": int(a.size), "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="per variant")
    args = ap.parse_args(argv)
    os.environ["TECHNIC_TOPIC_PREFIX"] = "pacing."
    from stream.io.broker import EmbeddedBroker
    from stream.io.fetch_pacing import FetchPacer
    from stream.io.topics_config import create_topics, topic_name, topic_specs
    d = FetchPacer()
    variants = [("spin: getmany 5 ms + sleep 20 ms, not paused (role workers before)", "spin", 5, 0.02),
                ("pause: getmany 5 ms + paused sleep 20 ms (one-process before)", "pause", 5, 0.02),
                ("pacer: wait 2 ms, hot sleep 2 ms", "pacer", 2, 0.002),
                (f"pacer: wait {d.wait_ms} ms, hot sleep {d.hot_sleep_s * 1e3:g} ms (default)", "pacer",
                 d.wait_ms, d.hot_sleep_s)]
    broker = EmbeddedBroker(Path(tempfile.mkdtemp(prefix="technic-pacing-")) / "broker").start()
    rows = []
    try:
        create_topics(broker.bootstrap, topic_specs())
        for name, kind, wait_ms, sleep_s in variants:
            r = asyncio.run(_variant(broker.bootstrap, topic_name("bars"), kind, wait_ms, sleep_s, args.seconds))
            rows.append({"variant": name, **r})
            print(rows[-1], flush=True)
    finally:
        broker.stop()
    base = rows[0]["cpu_s_per_s"]
    for r in rows:
        r["cpu_vs_spin"] = r["cpu_s_per_s"] / base
    meta = {"command": "python bench/fetch_pacing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "feed": "one record every 30-70 ms (uniform), producer without linger, same process",
            "cpu": "consumer + producer process CPU seconds per wall second (getrusage)", **environment()}
    write_results("fetch_pacing", rows, meta)
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
