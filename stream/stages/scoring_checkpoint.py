"""Checkpoints of the scoring stage: its whole state and the ``technic.features`` offsets it reflects.

One record keyed ``scoring`` on the compacted ``technic.snapshots`` topic (next to the per-symbol
stage's per-partition snapshots, which ``stream.stages.checkpoint.decode_snapshot`` tells apart)::

    {"kind": "scoring", "format": 1, "offsets": {features partition: next offset},
     "model_version", "feature_names_hash", "last_closed": ts or null,
     "partitions": {"n", "wm": {p: ts or null}, "done": {p: ts}}, "late_rows",
     "market": {"program", "layout", "symbols": [in slot order], "F": b64(zlib(float64 rows)),
                "I": b64(zlib(int64 rows))},
     "ring": {"length", "n_features", "cnt": b64, "hist": b64(zlib(float32))} or null,
     "pending": [[ts, [symbols], b64(rows float64), b64(closes), b64(received)], ...],
     "gate": [[type, symbol, feature, closed timestamps ago], ...]}

What the scoring stage keeps, and so what a snapshot holds: the market program's state of every
symbol (beta, correlation to the market: a fold over every timestamp; only the market program's
state rows, the one part of its ``FeatureEngine`` the scoring stage steps, written as two arrays:
~0.5 s for 505 symbols through ``get_state`` per symbol, a few ms this way), the history ring of
normalized rows (sequence models), the rows of every open (not yet closed) timestamp, the input
partitions' watermarks, the last closed timestamp (the de-duplication rule: a row at or before it
is dropped), and the alert cool-downs. Not kept: ``caught_up`` flags (stale after a restart: they
come back with the next watermark heartbeat, so no timestamp is closed by the grace rule on the
strength of an old flag), counters and latency (per process), the online layer (the scoring
role runs no extension; ``snapshot`` refuses a stage with extensions rather than write an
incomplete state).

Floats travel as raw little-endian bytes (NaN and every bit kept): ``restore`` gives back a stage
whose later scores equal those of the stage that never stopped, bit for bit. Slots are restored
in their original order, so the ring is copied by slot.

Model version: nothing in the state depends on the served model. The market program and the
rows depend on the feature registry only (``restore`` checks the market program's hash and state
layout; the ring is
checked against the registry's feature names and dropped, with a warning, when they differ); the
ring holds every registry column normalized, and a model picks its columns when it reads. If the
snapshot was written under another model version than the one now served, the stage goes on with
the served one and its first closed timestamp carries a ``model_reload`` alert naming both.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from typing import Callable

import numpy as np
import orjson

from technic.features import registry as R
from technic.features.incremental import NAT

from stream.io.output import Output
from stream.io.timestamps import ts_ns, ts_string
from stream.stages.history import FeatureHistory

log = logging.getLogger(__name__)
KEY = b"scoring"
FORMAT = 1


def _b64(a: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def _unb64(s: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def _zb64(b: bytes) -> str:
    return base64.b64encode(zlib.compress(b, 1)).decode()


def _unzb64(s: str) -> bytes:
    return zlib.decompress(base64.b64decode(s))


def feature_names_hash() -> str:
    return hashlib.sha256("|".join(R.FEATURE_NAMES).encode()).hexdigest()[:16]


def _ts(t: int):
    return None if t == NAT else ts_string(t)


def capture(stage, offsets: dict[int, int]) -> Callable[[], Output]:
    """Copy the stage's state now (arrays copied, a few ms); return the function that builds the
    snapshot record from the copies (zlib, base64: the expensive part, safe off the event loop)."""
    if stage.extensions:
        raise ValueError(f"scoring stage with {len(stage.extensions)} extension(s): their state is not "
                         f"checkpointed; run the scoring role without extensions or without snapshots")
    eng = stage.engine
    order = sorted(eng.slots, key=eng.slots.get)
    n = len(order)
    ring = stage.ring
    ring_copy = None
    if n and ring.cnt[:n].any():
        ring_copy = (ring.length, ring.hist.shape[2], ring.cnt[:n].copy(), ring.hist[:n].astype("<f4"))
    pending = []
    for t in sorted(stage.pending):
        bucket = stage.pending[t]
        names = sorted(bucket)
        pending.append((t, names, np.stack([bucket[s][0] for s in names]), [bucket[s][1] for s in names],
                        [bucket[s][2] for s in names]))
    step = stage.stats.timestamps_closed
    head = {
        "kind": "scoring", "format": FORMAT, "offsets": {str(p): int(o) for p, o in offsets.items()},
        "model_version": stage.models.version, "feature_names_hash": feature_names_hash(),
        "last_closed": _ts(stage.last_closed),
        "partitions": {"n": stage.n_partitions, "wm": {str(p): _ts(w) for p, w in stage.wm.items()},
                       "done": {str(p): _ts(d) for p, d in stage.done.items()}},
        "late_rows": stage.late_rows,
        "gate": [[k[0], k[1], k[2], int(v - step)] for k, v in stage.gate._last.items()],
    }
    program, layout = eng.mkt.program.hash, eng.mkt.plan.layout_hash
    F, I = eng.mkt.table.F[:n].astype("<f8"), eng.mkt.table.I[:n].astype("<i8")

    def build() -> Output:
        ring_rec = None
        if ring_copy is not None:
            length, nf, cnt, hist = ring_copy
            ring_rec = {"length": length, "n_features": nf, "cnt": _b64(cnt, np.int64),
                        "hist": _zb64(np.ascontiguousarray(hist).tobytes())}
        return Output("snapshots", KEY, {
            **head,
            "market": {"program": program, "layout": layout, "symbols": order,
                       "F": _zb64(np.ascontiguousarray(F).tobytes()), "I": _zb64(np.ascontiguousarray(I).tobytes())},
            "ring": ring_rec,
            "pending": [[ts_string(t), names, _b64(rows, np.float64), _b64(closes, np.float64),
                         _b64(recv, np.float64)] for t, names, rows, closes, recv in pending],
        })
    return build


def snapshot(stage, offsets: dict[int, int]) -> Output:
    """The snapshot record of ``stage`` (``offsets``: features partition -> next offset to read)."""
    return capture(stage, offsets)()


def restore(stage, snap: dict) -> dict[int, int]:
    """Load a scoring snapshot into a fresh ``stage``; return its offsets (partition -> next offset).

    Raises ``ValueError`` for a snapshot this stage cannot take (another format or feature
    registry); the caller then replays the features topic from its beginning."""
    if snap.get("format") != FORMAT:
        raise ValueError(f"scoring snapshot format {snap.get('format')!r}, expected {FORMAT}")
    if stage.engine.slots or stage.pending or stage.last_closed != NAT:
        raise ValueError("restore into a fresh scoring stage only")
    eng = stage.engine
    mk = snap["market"]
    if mk["program"] != eng.mkt.program.hash or mk["layout"] != eng.mkt.plan.layout_hash:
        raise ValueError(f"scoring snapshot of another market program ({mk['program']} / {mk['layout']}); "
                         f"this registry has {eng.mkt.program.hash} / {eng.mkt.plan.layout_hash}")
    n = len(mk["symbols"])
    nf, ni = eng.mkt.table.F.shape[1], eng.mkt.table.I.shape[1]
    F = np.frombuffer(_unzb64(mk["F"]), dtype="<f8")
    I = np.frombuffer(_unzb64(mk["I"]), dtype="<i8")
    if F.size != n * nf or I.size != n * ni:
        raise ValueError(f"scoring snapshot: {F.size}/{I.size} market state values for {n} symbols, "
                         f"expected {n * nf}/{n * ni}; corrupt")
    F, I = F.reshape(n, nf), I.reshape(n, ni)
    for s in mk["symbols"]:
        eng.slot(s)
    eng.mkt.table.F[:n] = F
    eng.mkt.table.I[:n] = I
    r = snap.get("ring")
    if r is not None:
        if snap.get("feature_names_hash") != feature_names_hash() or r["n_features"] != len(R.FEATURE_NAMES):
            log.warning("scoring snapshot: history ring written for another feature list; rebuilt from empty")
        else:
            ring = FeatureHistory(r["n_features"], r["length"], eng.capacity)
            ring.hist[:n] = np.frombuffer(_unzb64(r["hist"]), dtype="<f4").reshape(n, r["length"], r["n_features"])
            ring.cnt[:n] = _unb64(r["cnt"], np.int64)
            stage.ring = ring
    for t, names, rows, closes, recv in snap["pending"]:
        rows = _unb64(rows, np.float64).reshape(len(names), -1)
        closes, recv = _unb64(closes, np.float64), _unb64(recv, np.float64)
        stage.pending[ts_ns(t)] = {s: (rows[i].copy(), float(closes[i]), float(recv[i])) for i, s in enumerate(names)}
    stage.last_closed = NAT if snap["last_closed"] is None else ts_ns(snap["last_closed"])
    stage.n_partitions = int(snap["partitions"]["n"])
    stage.wm = {int(p): NAT if w is None else ts_ns(w) for p, w in snap["partitions"]["wm"].items()}
    stage.done = {int(p): NAT if d is None else ts_ns(d) for p, d in snap["partitions"].get("done", {}).items()}
    stage.caught_up = {}
    stage.late_rows = int(snap.get("late_rows", 0))
    step = stage.stats.timestamps_closed
    stage.gate._last = {(a, b, c): step + int(d) for a, b, c, d in snap.get("gate", [])}
    stage.last_progress = stage.clock()
    stage.restored_model = snap.get("model_version")
    return {int(p): int(o) for p, o in snap["offsets"].items()}


def decode(raw: bytes) -> dict | None:
    """A scoring snapshot record, or None for a tombstone / another kind of record."""
    if not raw:
        return None
    try:
        v = orjson.loads(raw)
        return v if isinstance(v, dict) and v.get("kind") == "scoring" and "offsets" in v else None
    except orjson.JSONDecodeError:
        return None
