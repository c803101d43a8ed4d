"""Probe the embedded noida-db broker: start-up, raw throughput, durability, group coordinator.

Usage::

    .venv/bin/python bench/broker_probe.py [--n 100000] [--out bench/results/broker_probe.json]

Writes a JSON file and prints a markdown summary (pasted into docs/broker.md).
Each probe uses its own fresh data dir and broker so probes cannot influence each other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from stream.io.broker import EmbeddedBroker  # noqa: E402
from stream.io.topics_config import TopicSpec  # noqa: E402

PAYLOAD = (b'{"symbol":"AAPL","ts":"2017-03-01T16:00:00Z","seq":%d,"open":136.47,'
           b'"high":139.36,"low":136.1,"close":139.08,"volume":36414585.0,"pad":"xxxxxxxxxxx"}')


def _msg(i: int) -> bytes:
    return PAYLOAD % i


async def produce(bootstrap: str, topic: str, n: int, acks="all", start: int = 0) -> float:
    """Produce n ~150-byte messages; return seconds until every send is acknowledged."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=acks, linger_ms=5,
                         max_batch_size=256 * 1024)
    await p.start()
    t0 = time.perf_counter()
    try:
        futs = []
        for i in range(start, start + n):
            futs.append(await p.send(topic, _msg(i), key=b"AAPL"))
            if len(futs) >= 5000:
                await asyncio.gather(*futs)
                futs.clear()
        await asyncio.gather(*futs)
        return time.perf_counter() - t0
    finally:
        await p.stop()


async def consume(bootstrap: str, topic: str, n: int, timeout_s: float = 60.0) -> tuple[int, float]:
    """Read from the beginning until n messages or timeout; return (count, seconds)."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=4 << 20,
                         fetch_max_bytes=16 << 20)
    await c.start()
    count, t0 = 0, time.perf_counter()
    try:
        while count < n and time.perf_counter() - t0 < timeout_s:
            got = await c.getmany(timeout_ms=500, max_records=20000)
            count += sum(len(v) for v in got.values())
        return count, time.perf_counter() - t0
    finally:
        await c.stop()


async def _topic_exists(bootstrap: str, topic: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    a = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await a.start()
    try:
        return topic in await a.list_topics()
    finally:
        await a.close()


def probe_startup(root: Path) -> dict:
    b = EmbeddedBroker(root / "startup")
    b.start()
    cold = b.startup_s
    b.create_topics([TopicSpec("bars", "s", 1)])
    asyncio.run(produce(b.bootstrap, "s", 20000))
    b.restart()
    warm = b.startup_s
    b.stop()
    return {"cold_start_s": round(cold, 3), "restart_with_20k_msgs_start_s": round(warm, 3)}


def probe_throughput(root: Path, n: int) -> dict:
    out = {}
    with EmbeddedBroker(root / "tput") as b:
        for acks in ("all", 1):
            topic = f"tput_{acks}"
            b.create_topics([TopicSpec("bars", topic, 1)])
            secs = asyncio.run(produce(b.bootstrap, topic, n, acks=acks))
            out[f"produce_acks_{acks}_msg_s"] = round(n / secs)
        got, secs = asyncio.run(consume(b.bootstrap, "tput_all", n))
        out["consume_msg_s"] = round(got / secs)
        out["consumed"] = got
        snap = b.data_dir / "kafka.json"
        time.sleep(1.5)
        out["snapshot_bytes_after_2n"] = snap.stat().st_size if snap.exists() else None
    out["message_bytes"] = len(_msg(0))
    out["n"] = n
    return out


def probe_restart(root: Path, n: int, kill_waits=(0.0, 0.5, 2.0)) -> dict:
    """Graceful restart keeps everything? SIGKILL right after the last ack loses what?"""
    out = {}
    with EmbeddedBroker(root / "graceful") as b:
        b.create_topics([TopicSpec("bars", "g", 1)])
        asyncio.run(produce(b.bootstrap, "g", n))
        b.restart()
        out["graceful_restart_kept"] = asyncio.run(consume(b.bootstrap, "g", n, 20))[0]
    for wait in kill_waits:
        b = EmbeddedBroker(root / f"kill{wait}")
        b.start()
        b.create_topics([TopicSpec("bars", "k", 1)])
        asyncio.run(produce(b.bootstrap, "k", n))
        time.sleep(wait)
        b.kill()
        b.start()
        kept = asyncio.run(consume(b.bootstrap, "k", n, 5))[0]
        out[f"sigkill_after_{wait:g}s_topic_exists"] = asyncio.run(_topic_exists(b.bootstrap, "k"))
        b.stop()
        out[f"sigkill_after_{wait:g}s_kept"] = kept
    out["acked"] = n
    return out


_MEMBER = r"""
import asyncio, sys, time
T0 = time.time()
from aiokafka import AIOKafkaConsumer
async def main(bootstrap, topic, name):
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="probe-group",
                         session_timeout_ms=10000, heartbeat_interval_ms=1000,
                         auto_offset_reset="earliest", client_id=name)
    await c.start()
    last = None
    while True:
        await c.getmany(timeout_ms=500)
        now = sorted(tp.partition for tp in c.assignment())
        if now != last:
            print(f"{name} assigned {now} at {time.time() - T0:.1f}s", flush=True)
            last = now
asyncio.run(main(*sys.argv[1:]))
"""


def _member(bootstrap: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _MEMBER, bootstrap, "grp", name],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _assignment_after(proc: subprocess.Popen, wait_s: float) -> list[str]:
    """Lines printed by a member within wait_s (non-blocking read via a thread)."""
    import threading
    lines: list[str] = []
    t = threading.Thread(target=lambda: [lines.append(ln.strip()) for ln in proc.stdout], daemon=True)
    t.start()
    time.sleep(wait_s)
    return lines


def probe_group(root: Path, wait_s: float = 30.0) -> dict:
    """Does a second member joining, or a member crashing, get a working rebalance?"""
    out = {}
    with EmbeddedBroker(root / "group") as b:
        b.create_topics([TopicSpec("bars", "grp", 2)])
        a = _member(b.bootstrap, "A")
        la = _assignment_after(a, 8)
        out["single_member_assigned"] = la[-1] if la else None
        m2 = _member(b.bootstrap, "B")
        lb = _assignment_after(m2, wait_s)
        out["after_second_join_A"] = la[-1] if la else None
        out["after_second_join_B"] = lb[-1] if lb else f"no assignment within {wait_s:g}s"
        for p in (a, m2):
            p.kill()
            p.wait()
        c = _member(b.bootstrap, "C")
        lc = _assignment_after(c, wait_s)
        out["after_crash_new_member_C"] = lc[-1] if lc else f"no assignment within {wait_s:g}s"
        c.kill()
        c.wait()
        b.restart()
        d = _member(b.bootstrap, "D")
        ld = _assignment_after(d, 15)
        out["after_broker_restart_new_member_D"] = ld[-1] if ld else "no assignment within 15s"
        d.kill()
        d.wait()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--restart-n", type=int, default=20_000)
    ap.add_argument("--group-wait", type=float, default=30.0)
    ap.add_argument("--kill-waits", default="0,0.5,2",
                    help="seconds between the last ack and SIGKILL, comma-separated")
    ap.add_argument("--skip-group", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated probes to run (default all)")
    ap.add_argument("--out", default="bench/results/broker_probe.json")
    args = ap.parse_args(argv)
    waits = [float(w) for w in args.kill_waits.split(",") if w]
    only = {w for w in args.only.split(",") if w}
    res = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}
    with tempfile.TemporaryDirectory(prefix="broker-probe-") as tmp:
        root = Path(tmp)
        for name, fn in [("startup", lambda: probe_startup(root)),
                         ("throughput", lambda: probe_throughput(root, args.n)),
                         ("restart", lambda: probe_restart(root, args.restart_n, waits)),
                         ("group", lambda: probe_group(root, args.group_wait))]:
            if (name == "group" and args.skip_group) or (only and name not in only):
                continue
            t0 = time.perf_counter()
            res[name] = fn()
            res[name]["probe_s"] = round(time.perf_counter() - t0, 1)
            print(f"## {name}\n" + "\n".join(f"- {k}: {v}" for k, v in res[name].items()), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
