"""Delayed labels in the stream: join the prediction made at t with the return realized h bars later.

Same convention as ``technic.labels`` (the batch labels), execution lag included: ``fwd_ret_h`` at
(t, s) is ``close[t+lag+h] / close[t+lag] - 1`` where t+k is the k-th next bar **of that symbol's own
bar sequence** (a gap is skipped over), NaN when either close is NaN or non-positive; ``excess_h`` is ``fwd_ret_h``
minus the cross-sectional median of the ``fwd_ret_h`` that mature together **for the same origin
timestamp** (in a regular calendar all symbols of one origin mature in the same batch, which then
equals the batch definition exactly).

Per symbol the buffer keeps a ring of the last ``max(horizons) + lag + 1`` entries
``(ts, close, payload)``; ``payload`` is any fixed-width float vector the caller wants joined with the
label (the layer stores the batch scores, the online scores and the learner inputs). Memory is
bounded by ``n_symbols * (max(h) + lag + 1) * (payload width + 2)`` floats. State is plain JSON
(``to_dict`` / ``from_dict``; NaN is written as null), and the round trip is exact.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from technic.labels import DEFAULT_LAG


@dataclass
class Matured:
    """Labels that became known at one timestamp for one horizon (rows in symbol order)."""

    origin_ts: np.ndarray   # (n,) int64 ns: the timestamp the prediction was made at
    symbols: list
    fwd_ret: np.ndarray     # (n,)
    excess: np.ndarray      # (n,) fwd_ret minus the median of its origin group
    payload: np.ndarray     # (n, width) what was stored at origin_ts

    def __len__(self) -> int:
        return len(self.symbols)


def _f(x: float):
    return None if x != x else float(x)   # NaN -> null (JSON); floats keep repr round trip


def _nan(x) -> float:
    return float("nan") if x is None else float(x)


class DelayedLabelBuffer:
    """Bounded per-symbol rings of (ts, close, payload); see module docstring."""

    def __init__(self, horizons=(5, 10), width: int = 0, lag: int = DEFAULT_LAG):
        hs = tuple(int(h) for h in horizons)
        if not hs or any(h < 1 for h in hs):
            raise ValueError(f"horizons must be positive bar counts, got {horizons!r}")
        if width < 0 or lag < 0:
            raise ValueError(f"width and lag must be >= 0, got {width!r}, {lag!r}")
        self.horizons = hs
        self.width = int(width)
        self.lag = int(lag)
        self.size = max(hs) + self.lag + 1
        self._rings: dict[str, deque] = {}

    def __len__(self) -> int:
        return sum(len(r) for r in self._rings.values())

    def push(self, ts_ns: int, symbols, closes, payload=None) -> dict[int, Matured]:
        """Store the entries of one timestamp; return the labels that matured with them, per horizon."""
        closes = np.asarray(closes, dtype=np.float64)
        k = len(symbols)
        if payload is None:
            payload = np.zeros((k, self.width))
        payload = np.asarray(payload, dtype=np.float64)
        if payload.shape != (k, self.width) or closes.shape != (k,):
            raise ValueError(f"expected closes ({k},) and payload ({k}, {self.width}), "
                             f"got {closes.shape} and {payload.shape}")
        got = {h: ([], [], [], []) for h in self.horizons}  # origin ts, symbol, fwd_ret, payload row
        ts_ns = int(ts_ns)
        for i, s in enumerate(symbols):
            ring = self._rings.get(s)
            if ring is None:
                ring = self._rings[s] = deque(maxlen=self.size)
            elif ring[-1][0] >= ts_ns:
                raise ValueError(f"{s}: timestamp {ts_ns} is not after its last entry {ring[-1][0]}")
            c = float(closes[i])
            ring.append((ts_ns, c, payload[i].copy()))
            n = len(ring)
            for h in self.horizons:
                if n > h + self.lag:
                    t0, _, p0 = ring[n - 1 - h - self.lag]    # the origin: prediction made at its close
                    c0 = ring[n - 1 - h][1]                   # the entry: lag bars later
                    r = c / c0 - 1.0 if c0 > 0 and c > 0 else float("nan")
                    g = got[h]
                    g[0].append(t0), g[1].append(s), g[2].append(r), g[3].append(p0)
        out = {}
        for h, (ts, syms, rets, rows) in got.items():
            if not syms:
                continue
            ts = np.asarray(ts, dtype=np.int64)
            rets = np.asarray(rets, dtype=np.float64)
            exc = np.full(len(rets), np.nan)
            for t in np.unique(ts):
                m = (ts == t) & np.isfinite(rets)
                if m.any():
                    exc[m] = rets[m] - np.median(rets[m])
            out[h] = Matured(ts, syms, rets, exc, np.vstack(rows))
        return out

    def forget(self, symbol: str) -> None:
        self._rings.pop(symbol, None)

    # -- state ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"horizons": list(self.horizons), "width": self.width, "lag": self.lag,
                "rings": {s: [[t, _f(c), [_f(x) for x in p]] for t, c, p in ring]
                          for s, ring in self._rings.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "DelayedLabelBuffer":
        buf = cls(d["horizons"], d["width"], d.get("lag", 0))
        for s, entries in d["rings"].items():
            ring = buf._rings[s] = deque(maxlen=buf.size)
            for t, c, p in entries:
                ring.append((int(t), _nan(c), np.array([_nan(x) for x in p], dtype=np.float64)))
        return buf
