"""Static partition assignment for the split mode's per-symbol workers.

On Apache Kafka, a consumer group can assign partitions (``--group``: ``stream.service.symbol_worker``;
the snapshot topic restores state after a rebalance). The embedded broker's group coordinator freezes
when a member crashes, so there the workers take their partitions statically: ``--member i/N``
(partitions ``p`` with ``p % N == i``) or ``--partitions 0,3``.
"""

from __future__ import annotations

from technic.errors import TechnicError


def parse_member(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise TechnicError(f"--member {text!r}: expected i/N, e.g. 0/3") from None
    if n < 1 or not 0 <= i < n:
        raise TechnicError(f"--member {text!r}: expected 0 <= i < N")
    return i, n


def parse_partitions(text: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise TechnicError(f"--partitions {text!r}: expected comma-separated partition numbers") from None
    if not out or out[0] < 0:
        raise TechnicError(f"--partitions {text!r}: expected partition numbers >= 0")
    return out


def assigned(n_partitions: int, member: tuple[int, int] | None = None, partitions: list[int] | None = None) -> list[int]:
    """The input partitions this worker owns out of ``n_partitions``."""
    if partitions is not None:
        bad = [p for p in partitions if p >= n_partitions]
        if bad:
            raise TechnicError(f"--partitions {bad}: the bars topic has {n_partitions} partition(s)")
        return list(partitions)
    if member is None:
        return list(range(n_partitions))
    i, n = member
    return [p for p in range(n_partitions) if p % n == i]
