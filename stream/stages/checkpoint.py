"""Checkpoints of the per-symbol stage: a partition's state and the input offsets it reflects.

One snapshot per input partition ``p``, keyed ``p`` on the compacted ``technic.snapshots``
topic (the latest one per key survives compaction)::

    {"partition": p, "offsets": {"bars": next offset, "fundamentals": ..., "alt": ...},
     "watermark": ts or null, "symbols": {symbol: {"state": base64(zlib(FeatureEngine.get_state)),
                                                    "seq": last seq, "ts": last ts ns,
                                                    "digests": [[seq, digest], ...]}}}

State and position are one fact (the Kafka Streams / Flink pattern): ``restore`` puts every
symbol of the partition back exactly (``get_state``/``set_state`` round-trip bit for bit) and
returns the offsets to resume from, so a restart or a partition move replays only the input
after the snapshot. Recovery time is bounded by the snapshot interval, not by the log, and
the input topics' retention no longer limits correctness. The redelivery digests keep the last
``DIGESTS`` applied bars per symbol (an older redelivered ``seq`` is skipped unverified).
"""

from __future__ import annotations

import base64
import zlib
from typing import Callable

import orjson

from technic.features.incremental import NAT

from stream.io.output import Output
from stream.io.timestamps import ts_ns, ts_string

DIGESTS = 64
SIDE_KINDS = ("bars", "fundamentals", "alt")


def capture(stage, partition: int, offsets: dict[str, int]) -> "Callable[[], Output]":
    """Copy what the snapshot of ``partition`` needs, now; return the function that builds the record.

    The copy is the cheap part (state rows gathered per array, digest arrays: a few ms for 250
    symbols); the returned builder does the expensive part (state bytes, zlib, base64: ~70 ms) and
    reads nothing of ``stage``, so a worker runs it off its event loop while the stage goes on."""
    adm = stage.admission
    d = adm.digests
    syms = stage.symbols_of(partition)
    states = stage.engine.states_later([s for s in syms if s in stage.engine.slots])
    raw = {}
    for s in syms:
        n = d._n.get(s, 0)
        lo = max(0, n - DIGESTS)
        raw[s] = (adm.seen_seq.get(s), adm.seen_ts.get(s),
                  (d._seq[s][lo:n].copy(), d._dig[s][lo:n].copy()) if n else None)
    w = stage.watermark.get(partition, NAT)
    offs = {k: int(offsets.get(k, 0)) for k in SIDE_KINDS}

    def build() -> Output:
        blobs = states()
        syms = {s: {"state": base64.b64encode(zlib.compress(blobs[s], 1)).decode() if s in blobs else None,
                    "seq": seq, "ts": ts,
                    "digests": [[q, g] for q, g in zip(dg[0].tolist(), dg[1].tolist())] if dg is not None else []}
                for s, (seq, ts, dg) in raw.items()}
        return Output("snapshots", str(partition).encode(), {
            "partition": int(partition), "offsets": offs,
            "watermark": None if w == NAT else ts_string(w), "symbols": syms})
    return build


def snapshot(stage, partition: int, offsets: dict[str, int]) -> Output:
    """The snapshot record of ``partition`` (``offsets``: kind -> next offset to read)."""
    return capture(stage, partition, offsets)()


def restore(stage, snap: dict) -> dict[str, int]:
    """Load a snapshot record into ``stage``; return its offsets (kind -> next offset to read)."""
    p = int(snap["partition"])
    adm = stage.admission
    for s, v in snap["symbols"].items():
        if v.get("state") is not None:
            stage.engine.set_state(s, zlib.decompress(base64.b64decode(v["state"])))
        if v.get("seq") is not None:
            adm.seen_seq[s] = int(v["seq"])
        if v.get("ts") is not None:
            adm.seen_ts[s] = int(v["ts"])
        for q, g in v.get("digests", []):
            adm.digests.add(s, int(q), int(g))
        stage.partition_of[s] = p
    if snap.get("watermark"):
        stage.watermark[p] = ts_ns(snap["watermark"])
    stage.forget_timestamps(p)   # completeness starts over: this process has not seen a whole timestamp yet
    return {k: int(snap["offsets"].get(k, 0)) for k in SIDE_KINDS}


def decode_snapshot(raw: bytes) -> dict | None:
    """A snapshot record, or None for a tombstone / foreign record."""
    if not raw:
        return None
    try:
        v = orjson.loads(raw)
        int(v["partition"]), v["offsets"], v["symbols"]
        return v
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
