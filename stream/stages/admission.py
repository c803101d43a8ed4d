"""Admission of input records: the checks before a record may touch the worker's state.

One stage of the pipeline (decode -> **admit** -> buffer by timestamp -> features -> score):

1. decode: size limit, JSON, JSON Schema, bar sanity (``stream.io.codecs.decode``);
2. **key**: symbol-keyed topics (bars, fundamentals, alt) must carry the payload's symbol as
   the Kafka key. A null or different key is dead-lettered as ``key_mismatch``: with several
   partitions, the key decides the partition, so a wrong key breaks per-symbol ordering
   (and, with a consumer group, sends the symbol's bars to two workers);
3. universe (optional): a symbol outside a configured universe -> ``unknown_symbol``;
4. sequence: ``seq`` at or below the symbol's last applied one is an exact redelivery (skipped,
   counted), a conflicting redelivery (``conflicting_redelivery``) or a late bar that was never
   applied (``out_of_order``), see ``stream.stages.redelivery``; a new ``seq`` whose timestamp is not
   after the symbol's last bar -> ``duplicate``/``out_of_order``; a bar for a timestamp already
   scored -> ``out_of_order``.

Every rejection raises ``RecordError(reason_code, reason)``; nothing is changed before the
record is admitted. In-process callers that have no Kafka key (tests, in-memory replays) pass
``key=NO_KEY`` (the default), which skips check 2 only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from technic.features.incremental import NAT

from stream.io.codecs import RecordError, decode, parse_ts
from stream.stages.redelivery import CONFLICT, NEVER_APPLIED, SeqDigests, bar_digest
from stream.io.timestamps import ts_ns, ts_string

NO_KEY = object()  # "this record did not come from Kafka": the key is not checked
BAR_KEYS = ("open", "high", "low", "close", "volume")


def check_key(kind: str, rec: dict, key) -> None:
    """``key_mismatch`` unless the record's Kafka key is its symbol (skipped for ``NO_KEY``)."""
    if key is NO_KEY:
        return
    sym = rec["symbol"]
    if key is None:
        raise RecordError("key_mismatch", f"{kind} record for {sym} has a null key; records are keyed by "
                                          f"symbol (the key decides the partition, hence per-symbol order)")
    text = key.decode("utf-8", errors="replace") if isinstance(key, (bytes, bytearray)) else str(key)
    if text != sym:
        raise RecordError("key_mismatch", f"{kind} record for {sym} has key {text[:40]!r}; records are keyed "
                                          f"by symbol (the key decides the partition, hence per-symbol order)")


def bar_values(recs: list[dict]) -> dict[str, np.ndarray]:
    """Admitted bars' fields as the arrays ``FeatureEngine.update_ts`` takes, one row per bar (null -> NaN)."""
    return {k: np.array([np.nan if r.get(k) is None else float(r[k]) for r in recs]) for k in BAR_KEYS}


def apply_side_record(engine, kind: str, raw: bytes, key, max_payload: int) -> str:
    """Decode, key-check and apply one ``fundamentals`` or ``alt`` record to ``engine``; its symbol.
    Every rejection is a RecordError (a value the engine refuses: ``sanity``)."""
    try:
        rec = decode(kind, raw, max_bytes=max_payload)
        check_key(kind, rec, key)
        if kind == "fundamentals":
            engine.add_fundamental(rec["symbol"], rec["available_from"], rec["period_end"], rec["fields"])
        else:
            engine.add_alt(rec["symbol"], parse_ts(rec["ts"]).replace(tzinfo=None), rec["field"], rec["value"])
    except (ValueError, TypeError) as e:
        raise RecordError("sanity", f"{kind}: {e}") from e
    return rec["symbol"]


@dataclass
class Admitted:
    rec: dict
    t: int                 # bar timestamp, int ns
    missing: int           # seqs skipped since the symbol's previous bar (0: none; a data_gap)
    prev_seq: int | None


class BarAdmission:
    """Per-symbol last applied ``seq``/timestamp and the checks above, for bars."""

    def __init__(self, universe: frozenset | None = None, seq_window: int = 4096, max_payload: int = 65536):
        self.universe = universe
        self.max_payload = max_payload
        self.seen_seq: dict[str, int] = {}
        self.seen_ts: dict[str, int] = {}
        self.digests = SeqDigests(seq_window)

    def admit(self, raw: bytes, key, last_closed: int) -> Admitted | None:
        """The admitted bar, None for an exact redelivery, or RecordError (state untouched)."""
        rec = decode("bars", raw, max_bytes=self.max_payload)
        check_key("bar", rec, key)
        sym, seq = rec["symbol"], int(rec["seq"])
        if self.universe is not None and sym not in self.universe:
            raise RecordError("unknown_symbol", f"bar for {sym!r}, which is not in the configured universe "
                                                f"({len(self.universe)} symbols)")
        t = ts_ns(rec["ts"])
        prev = self.seen_seq.get(sym)
        if prev is not None and seq <= prev:
            verdict = self.digests.classify(sym, seq, bar_digest(t, rec))
            if verdict == CONFLICT:
                raise RecordError("conflicting_redelivery", f"bar {sym} seq {seq} at {rec['ts']} differs from the "
                                                            f"bar applied under that seq; the applied one is kept")
            if verdict == NEVER_APPLIED:
                raise RecordError("out_of_order", f"late bar {sym} seq {seq} at {rec['ts']}: that seq was never "
                                                  f"applied (a gap) and later bars already were (last seq {prev})")
            return None  # exact (or too old to verify): a redelivery
        last = self.seen_ts.get(sym, NAT)
        if t <= last:
            code = "duplicate" if t == last else "out_of_order"
            raise RecordError(code, f"bar {sym} at {rec['ts']} is not after its last bar at {ts_string(last)} "
                                    f"(seq {seq})")
        if t <= last_closed:
            raise RecordError("out_of_order", f"late bar {sym} at {rec['ts']}: timestamp already scored "
                                              f"(last closed {ts_string(last_closed)})")
        missing = seq - prev - 1 if prev is not None and seq > prev + 1 else 0
        self.seen_seq[sym] = seq
        self.seen_ts[sym] = t
        self.digests.add(sym, seq, bar_digest(t, rec))
        return Admitted(rec, t, missing, prev)

    def admit_counted(self, raw: bytes, key, last_closed: int, stats) -> Admitted | None:
        """``admit``, counting exact redeliveries (``stats.redelivered``) and conflicting ones
        (``stats.conflicting_redeliveries``) on the caller's stats."""
        try:
            bar = self.admit(raw, key, last_closed)
        except RecordError as e:
            if e.reason_code == "conflicting_redelivery":
                stats.conflicting_redeliveries += 1
            raise
        if bar is None:
            stats.redelivered += 1
        return bar
