"""Bar timestamps inside the worker: one representation, int nanoseconds (UTC, naive).

``ts_ns`` parses a record's ISO string (cached: a replay repeats each timestamp once per
symbol); ``ts_string`` writes one back (a date when it is midnight, else a UTC datetime).
"""

from __future__ import annotations

import numpy as np

from technic.features.incremental import to_ns

from stream.io.codecs import parse_ts

_TS_CACHE: dict[str, int] = {}


def ts_ns(ts: str) -> int:
    """Bar timestamp string -> int ns (UTC), cached."""
    t = _TS_CACHE.get(ts)
    if t is None:
        if len(_TS_CACHE) > 100_000:
            _TS_CACHE.clear()
        t = _TS_CACHE[ts] = to_ns(parse_ts(ts).replace(tzinfo=None))
    return t


def ts_string(t_ns: int) -> str:
    """ISO string of a bar timestamp: a date when it is midnight, else a UTC datetime."""
    d = np.datetime64(t_ns, "ns")
    if t_ns % 86_400_000_000_000 == 0:
        return str(d.astype("datetime64[D]"))
    return str(d.astype("datetime64[ms]")) + "Z"
