"""orjson codecs and JSON-Schema validation at the stream edge.

Every record entering the stream passes :func:`decode`: size limit, JSON parse
(orjson, which already rejects ``NaN``/``Infinity`` literals), schema validation
(fastjsonschema, compiled once per schema) and, for bars, :func:`sanity_check_bar`.
Any failure raises :class:`RecordError` with a machine-readable ``reason_code``
(the ``deadletter.json`` enum) so the caller can route the payload to the dead-letter
topic with :func:`deadletter_record` instead of crashing the agent.

Schemas live in ``schemas/`` at the repository top level; :data:`SCHEMA_DIR` finds
them from a checkout, next to an installed ``stream`` package, or via ``$TECHNIC_SCHEMAS``.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import fastjsonschema
import orjson

from technic.errors import DataError

#: topic kind -> schema file
SCHEMA_FILES = {
    "bars": "bar.json", "bar": "bar.json",
    "fundamentals": "fundamental.json", "fundamental": "fundamental.json",
    "alt": "alt.json",
    "scores": "score.json", "score": "score.json",
    "explanations": "explanation.json", "explanation": "explanation.json",
    "alerts": "alert.json", "alert": "alert.json",
    "deadletter": "deadletter.json",
    "control": "control.json",
}
REASON_CODES = ("deserialize", "schema", "sanity", "duplicate", "out_of_order",
                "oversize", "unknown_model", "unknown_symbol", "key_mismatch", "conflicting_redelivery", "other")
DEFAULT_MAX_BYTES = 65536
PRICE_TOL = 1e-9
#: A bar timestamp further than this in the future (vs. wall clock) is rejected.
DEFAULT_MAX_FUTURE = timedelta(days=2)
#: ... and one before this: the worker keeps timestamps as int64 nanoseconds (from 1677-09-21 on).
TS_MIN = datetime(1678, 1, 1, tzinfo=timezone.utc)


class RecordError(DataError):
    """An input record was rejected; ``reason_code`` is one of :data:`REASON_CODES`."""

    def __init__(self, reason_code: str, reason: str):
        if reason_code not in REASON_CODES:
            raise ValueError(f"unknown reason_code {reason_code!r}; expected one of {REASON_CODES}")
        super().__init__(f"{reason_code}: {reason}")
        self.reason_code = reason_code
        self.reason = reason


def _find_schema_dir() -> Path:
    env = os.environ.get("TECHNIC_SCHEMAS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1]      # .../stream (this file is stream/io/codecs.py)
    for candidate in (here.parent / "schemas", here / "schemas"):
        if (candidate / "bar.json").is_file():
            return candidate
    return here.parent / "schemas"


#: Directory holding the JSON schemas.
SCHEMA_DIR = _find_schema_dir()


def _schema_path(name: str) -> Path:
    file = SCHEMA_FILES.get(name, name if name.endswith(".json") else name + ".json")
    path = SCHEMA_DIR / file
    if not path.is_file():
        raise FileNotFoundError(f"schema {name!r} not found at {path} "
                                "(set TECHNIC_SCHEMAS to the schemas/ directory)")
    return path


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """Schema as a dict, by topic kind ("bars") or file name ("bar.json")."""
    return orjson.loads(_schema_path(name).read_bytes())


@lru_cache(maxsize=None)
def validator(name: str) -> Callable[[Any], Any]:
    """Compiled fastjsonschema validator for a schema (compiled once, cached)."""
    return fastjsonschema.compile(load_schema(name))


def _field_of(exc: fastjsonschema.JsonSchemaValueException) -> str:
    path = getattr(exc, "path", None) or []
    parts = [str(p) for p in path if p != "data"]
    return ".".join(parts) or "<record>"


def validate(kind: str, rec: Any) -> dict:
    """Validate a decoded record against its schema; raise RecordError("schema") naming the field."""
    try:
        validator(kind)(rec)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise RecordError("schema", f"{kind} field {_field_of(exc)}: {exc.message}") from None
    return rec


def parse_ts(ts: str) -> datetime:
    """ISO date or datetime string -> aware UTC datetime (naive values are taken as UTC)."""
    s = ts.strip().replace(" ", "T")
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


@lru_cache(maxsize=65536)
def _parse_ts_cached(ts: str) -> datetime:
    return parse_ts(ts)


_NOW = {"t": 0.0, "dt": None}


def _now() -> datetime:
    """Wall clock, refreshed at most every 0.5 s (the future check is in days)."""
    import time as _time
    t = _time.monotonic()
    if _NOW["dt"] is None or t - _NOW["t"] > 0.5:
        _NOW["t"], _NOW["dt"] = t, datetime.now(timezone.utc)
    return _NOW["dt"]


def sanity_check_bar(rec: dict, now: datetime | None = None,
                     max_future: timedelta = DEFAULT_MAX_FUTURE) -> dict:
    """Reject economically impossible bars with RecordError("sanity", ...).

    Checks: finite numbers, all given prices > 0, high >= low (tolerance 1e-9
    relative), volume >= 0, ts parseable, not before ``TS_MIN`` and not more than
    ``max_future`` ahead of ``now`` (default: wall clock). An open or close outside [low, high] is
    kept, as in the batch cleaning policy (``technic.data.quality.POLICY``):
    real feeds print such bars and the batch path keeps them, so rejecting
    them here would make stream and batch disagree.
    """
    sym = rec.get("symbol", "?")
    prices = {k: rec.get(k) for k in ("open", "high", "low", "close")}
    for k, v in list(prices.items()) + [("volume", rec.get("volume"))]:
        if v is not None and not math.isfinite(v):
            raise RecordError("sanity", f"bar {sym} field {k}: non-finite value {v!r}")
    for k, v in prices.items():
        if v is not None and v <= 0:
            raise RecordError("sanity", f"bar {sym} field {k}: price must be > 0, got {v!r}")
    vol = rec.get("volume")
    if vol is not None and vol < 0:
        raise RecordError("sanity", f"bar {sym} field volume: must be >= 0, got {vol!r}")
    hi, lo = prices["high"], prices["low"]
    if hi is not None and lo is not None:
        tol = PRICE_TOL * max(abs(hi), 1.0)
        if hi < lo - tol:
            raise RecordError("sanity", f"bar {sym} field high: high {hi!r} < low {lo!r}")
    try:
        ts = _parse_ts_cached(rec["ts"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError("sanity", f"bar {sym} field ts: unparseable {rec.get('ts')!r} ({exc})") from None
    if ts < TS_MIN:   # also keeps every timestamp inside the int64-nanosecond range of the worker
        raise RecordError("sanity", f"bar {sym} field ts: {rec['ts']} is before {TS_MIN.date()}")
    now = now or _now()
    if ts > now + max_future:
        raise RecordError("sanity", f"bar {sym} field ts: {rec['ts']} is more than "
                                    f"{max_future} in the future (now {now.isoformat()})")
    return rec


def decode(topic_kind: str, raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES,
           now: datetime | None = None, max_future: timedelta = DEFAULT_MAX_FUTURE) -> dict:
    """Bytes from a topic -> validated dict, or RecordError (oversize/deserialize/schema/sanity)."""
    if raw is None:
        raise RecordError("deserialize", f"{topic_kind}: empty (null) payload")
    if len(raw) > max_bytes:
        raise RecordError("oversize", f"{topic_kind}: payload of {len(raw)} bytes exceeds {max_bytes}")
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordError("deserialize", f"{topic_kind}: malformed JSON ({exc})") from None
    if not isinstance(rec, dict):
        raise RecordError("schema", f"{topic_kind} field <record>: expected a JSON object, "
                                    f"got {type(rec).__name__}")
    validate(topic_kind, rec)
    if topic_kind in ("bars", "bar"):
        sanity_check_bar(rec, now=now, max_future=max_future)
    return rec


def _default(obj: Any) -> Any:
    """Fallback for types orjson does not serialize natively (e.g. non-contiguous numpy arrays)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot JSON-encode object of type {type(obj).__name__}")


def encode(obj: Any) -> bytes:
    """Object -> JSON bytes (orjson; numpy supported; NaN/inf become null).

    orjson itself writes non-finite floats (Python and numpy) as ``null``, so no
    Python-level traversal is needed on the hot path.
    """
    return orjson.dumps(obj, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def utc_now_iso() -> str:
    """Current UTC time as ISO string with a Z suffix (millisecond precision)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deadletter_record(reason_code: str, reason: str, topic: str, partition: int | None,
                      offset: int | None, payload: bytes | str | None,
                      max_payload: int = 8192) -> dict:
    """A ``deadletter.json`` record carrying the (truncated) original payload and its origin."""
    if reason_code not in REASON_CODES:
        reason_code, reason = "other", f"[{reason_code}] {reason}"
    raw = payload.encode() if isinstance(payload, str) else (payload or b"")
    cut = raw[:max_payload]
    return {
        "reason": str(reason)[:2000],
        "reason_code": reason_code,
        "source_topic": topic,
        "partition": partition,
        "offset": offset,
        "payload": cut.decode("utf-8", errors="replace"),
        "payload_truncated": len(raw) > max_payload,
        "payload_bytes": len(raw),
        "received_at": utc_now_iso(),
    }
