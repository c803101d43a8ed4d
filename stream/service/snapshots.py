"""Reading the snapshot topic (``technic.snapshots``): every record one decoder accepts, in order.

The topic is compacted and holds two kinds of records: one per bars partition (the per-symbol
stage, ``stream.stages.checkpoint``) and one keyed ``scoring`` (``stream.stages.scoring_checkpoint``).
Each reader passes the decoder of its kind; a record the decoder rejects (another kind, a
tombstone) is skipped. Reads up to the end offsets seen at the start.
"""

from __future__ import annotations

from typing import Callable

from stream.io.topic_reader import read_to_end
from stream.io.topics_config import topic_name

SNAPSHOT_MAX_BYTES = 32 * 1024 * 1024


async def scan_snapshots(bootstrap: str, decode: Callable[[bytes], dict | None]) -> list[dict]:
    """The decoded records of the snapshot topic, oldest first (the last one per key is the latest)."""
    out: list[dict] = []

    async def keep(msgs):
        out.extend(v for v in map(decode, (m.value for m in msgs)) if v is not None)

    await read_to_end(bootstrap, topic_name("snapshots"), keep, max_partition_fetch_bytes=SNAPSHOT_MAX_BYTES,
                      fetch_max_bytes=SNAPSHOT_MAX_BYTES)
    return out
