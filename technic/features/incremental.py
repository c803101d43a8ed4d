"""Incremental evaluator: the same registry, one bar per symbol at a time.

``FeatureEngine`` keeps one state slot per symbol (ring buffers and running
statistics of every operator, the symbol's point-in-time fundamentals and
alt-data values, last timestamp/sequence) in struct-of-arrays form: one float
row and one int row per slot and program (``plan.StateTable``). An update is
one compiled call over the program's flat schedule (``plan.StepPlan``,
``kernels.run_plan``), whether it carries one symbol's bar (the per-symbol
stage, bars arriving one by one) or all symbols of a timestamp (a
micro-batch); each symbol's state evolves only with its own bars, in order,
and its values are bit-identical either way.

Order rules: a bar whose timestamp is not after the symbol's last one is
rejected with ``OrderError`` (duplicate or out-of-order) *before* any state
changes. Fundamentals take effect at the first bar on/after their
``available_from``; alt values at the first bar on/after their date: exactly
the as-of joins of the batch path.

A symbol's state serializes to bytes (``get_state``/``set_state``) and
round-trips exactly; that is what the stream stores in its tables. Format 2,
pickle-free: a little-endian uint32 header length, a JSON header (format,
program hashes, state layout hashes, symbol, pending side-input rows), then
the symbol's rows: time-series floats and ints, market floats and ints, then
last_ts, last_seq, n_bars, fundamentals (+ their key), alt values (+ dates).
"""

from __future__ import annotations

import struct
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import orjson

from ..errors import OrderError
from . import registry as R
from .batch import market_program, sector_codes, ts_program
from .cross_section import apply_cross_section, market_return
from .plan import StateTable, StepPlan
from .program import Program

NAT = np.iinfo(np.int64).min
_FUND = list(R.FUNDAMENTAL_INPUTS)
_ALT = list(R.ALT_FIELDS)
_TS_INPUTS = [*R.BAR_FIELDS, *_FUND, *_ALT]  # column order of the time-series stage's inputs
_FORMAT = 2


#: The dates int64 nanoseconds can hold (numpy/pandas datetime64[ns]: 1677-09-21 .. 2262-04-11)
NS_RANGE = (np.datetime64("1677-09-22", "s"), np.datetime64("2262-04-11", "s"))


def to_ns(ts) -> int:
    """Timestamp (str, datetime, numpy/pandas; an int is already ns) -> int nanoseconds since epoch.

    ValueError for a date outside ``NS_RANGE``: numpy would silently wrap it around to another
    date inside the range (year 1500 -> 2084, 2300 -> 1715)."""
    if isinstance(ts, (int, np.integer)):
        return int(ts)
    s = np.datetime64(ts, "s")
    if not np.isnat(s) and not NS_RANGE[0] <= s <= NS_RANGE[1]:
        raise ValueError(f"timestamp {ts!r} is outside the nanosecond range {NS_RANGE[0]} .. {NS_RANGE[1]}")
    return int(np.datetime64(ts, "ns").astype(np.int64))


class _Stage:
    """One program's schedule and the state rows of a growable set of symbol slots."""

    def __init__(self, program: Program, inputs: Sequence[str], capacity: int):
        self.program = program
        self.plan = StepPlan.of_program(program, inputs)
        self.table = StateTable(self.plan, capacity)

    def grow(self, n: int) -> None:
        self.table.grow(n)

    def run(self, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
        return self.plan.run(self.table.F, self.table.I, rows, X)


class FeatureEngine:
    """Per-symbol incremental feature state for every feature of the registry."""

    def __init__(self, sectors: Mapping[str, str] | None = None, capacity: int = 64):
        self.ts = _Stage(ts_program(), _TS_INPUTS, capacity)
        self.mkt = _Stage(market_program(), list(R.MARKET_FIELDS), capacity)
        self.capacity = capacity
        self.slots: dict[str, int] = {}
        self.sectors = dict(sectors or {})
        self._sector_code = dict(zip(self.sectors, sector_codes(self.sectors, self.sectors).tolist()))
        self.last_ts = np.full(capacity, NAT, np.int64)
        self.last_seq = np.full(capacity, -1, np.int64)
        self.n_bars = np.zeros(capacity, np.int64)
        self.fund = np.full((capacity, len(_FUND)), np.nan)
        self.fund_key = np.full((capacity, 2), NAT, np.int64)  # (available_from, period_end) applied
        self.alt = np.full((capacity, len(_ALT)), np.nan)
        self.alt_date = np.full((capacity, len(_ALT)), NAT, np.int64)
        self.pending_fund: dict[int, list] = {}
        self.pending_alt: dict[int, list] = {}
        self.ts_names = self.ts.program.output_names
        self.market_names = self.mkt.program.output_names
        self.feature_names = R.FEATURE_NAMES
        if self.feature_names != [*self.ts_names, *self.market_names, *(c.name for c in R.CROSS_SECTION)]:
            raise ValueError("registry order must be time-series, market, then cross-sectional features")
        self._column = {name: j for j, name in enumerate(self.feature_names)}

    # -- slots ---------------------------------------------------------------
    def slot(self, symbol: str) -> int:
        s = self.slots.get(symbol)
        if s is None:
            s = len(self.slots)
            if s >= self.capacity:
                self._grow(max(2 * self.capacity, s + 1))
            self.slots[symbol] = s
        return s

    def _grow(self, n: int) -> None:
        self.ts.grow(n)
        self.mkt.grow(n)
        pad = n - self.capacity
        self.last_ts = np.concatenate([self.last_ts, np.full(pad, NAT, np.int64)])
        self.last_seq = np.concatenate([self.last_seq, np.full(pad, -1, np.int64)])
        self.n_bars = np.concatenate([self.n_bars, np.zeros(pad, np.int64)])
        self.fund = np.vstack([self.fund, np.full((pad, len(_FUND)), np.nan)])
        self.fund_key = np.vstack([self.fund_key, np.full((pad, 2), NAT, np.int64)])
        self.alt = np.vstack([self.alt, np.full((pad, len(_ALT)), np.nan)])
        self.alt_date = np.vstack([self.alt_date, np.full((pad, len(_ALT)), NAT, np.int64)])
        self.capacity = n

    # -- point-in-time side inputs -------------------------------------------
    def add_fundamental(self, symbol: str, available_from, period_end, values: Mapping[str, float]) -> None:
        """Queue a fundamentals row; it applies at the first bar on/after ``available_from``."""
        vec = np.array([_num(values.get(f)) for f in _FUND])
        key = (to_ns(available_from), to_ns(period_end))   # may raise: before any state changes
        self.pending_fund.setdefault(self.slot(symbol), []).append((*key, vec))

    def add_alt(self, symbol: str, date, field: str, value: float) -> None:
        """Queue one alt-data value; unknown fields are ignored (returns without effect)."""
        if field in _ALT:
            t = to_ns(date)   # may raise: before any state changes
            self.pending_alt.setdefault(self.slot(symbol), []).append((t, _ALT.index(field), _num(value)))

    def _apply_pending(self, slots: np.ndarray, t: int) -> None:
        for s in slots.tolist():
            rows = self.pending_fund.get(s)
            if rows:
                due = sorted((r for r in rows if r[0] <= t), key=lambda r: (r[0], r[1]))
                for af, pe, vec in due:
                    if (af, pe) >= tuple(self.fund_key[s]):
                        self.fund[s] = vec
                        self.fund_key[s] = (af, pe)
                rest = [r for r in rows if r[0] > t]
                if rest:
                    self.pending_fund[s] = rest
                else:
                    del self.pending_fund[s]
            rows = self.pending_alt.get(s)
            if rows:
                for d, j, val in sorted((r for r in rows if r[0] <= t), key=lambda r: r[0]):
                    if d >= self.alt_date[s, j]:
                        self.alt[s, j] = val
                        self.alt_date[s, j] = d
                rest = [r for r in rows if r[0] > t]
                if rest:
                    self.pending_alt[s] = rest
                else:
                    del self.pending_alt[s]

    # -- bars ------------------------------------------------------------------
    def check_order(self, ts, symbols: Sequence[str]) -> dict[str, str]:
        """Symbols whose bar at ``ts`` would be a duplicate or out of order -> reason."""
        t = to_ns(ts)
        bad = {}
        for sym in symbols:
            s = self.slots.get(sym)
            if s is not None and self.last_ts[s] >= t:
                bad[sym] = "duplicate" if self.last_ts[s] == t else "out_of_order"
        if len(set(symbols)) != len(symbols):
            for sym in {x for x in symbols if list(symbols).count(x) > 1}:
                bad[sym] = "duplicate"
        return bad

    def update_ts(self, ts, symbols: Sequence[str], bars: Mapping[str, np.ndarray],
                  seq: Iterable[int] | None = None) -> np.ndarray:
        """Feed one bar per symbol at ``ts``; return the (k, n_ts) time-series features."""
        t = to_ns(ts)
        bad = self.check_order(t, symbols)
        if bad:
            first = next(iter(bad))
            raise OrderError(f"bar at {np.datetime64(t, 'ns')} for {first} is {bad[first]} "
                             f"(last bar at {np.datetime64(int(self.last_ts[self.slots[first]]), 'ns')}); "
                             f"{len(bad)} symbol(s) rejected, state unchanged")
        rows = np.array([self.slot(s) for s in symbols], dtype=np.intp)
        self._apply_pending(rows, t)
        nb, nf = len(R.BAR_FIELDS), len(_FUND)
        X = np.empty((len(rows), len(_TS_INPUTS)))
        for j, f in enumerate(R.BAR_FIELDS):
            X[:, j] = bars[f]
        X[:, nb:nb + nf] = self.fund[rows]
        X[:, nb + nf:] = self.alt[rows]
        out = self.ts.run(rows, X)
        self.last_ts[rows] = t
        self.n_bars[rows] += 1
        if seq is not None:
            self.last_seq[rows] = np.asarray(list(seq), dtype=np.int64)
        return out

    def sector_codes(self, symbols: Sequence[str]) -> np.ndarray:
        """``features.batch.sector_codes(symbols, self.sectors)`` from the map built once at start."""
        code = self._sector_code
        return np.array([code.get(s, -1) for s in symbols], dtype=np.int64)

    def cross_section(self, symbols: Sequence[str], ts_matrix: np.ndarray) -> np.ndarray:
        """Market and cross-sectional stages for ALL symbols of one timestamp.

        ``symbols`` must be the complete universe of the timestamp in sorted
        order (as the batch path sees it); returns the full (k, n_features)
        matrix in registry order.
        """
        rows = np.array([self.slots[s] for s in symbols], dtype=np.intp)
        n_ts, n_mkt = len(self.ts_names), len(self.market_names)
        out = np.empty((len(rows), len(self.feature_names)))
        out[:, :n_ts] = ts_matrix
        X = np.empty((len(rows), 2))  # the market stage's inputs: ret, mkt_ret
        X[:, 0] = ts_matrix[:, self._column["ret_1"]]
        X[:, 1] = market_return(X[:, 0])
        out[:, n_ts:n_ts + n_mkt] = self.mkt.run(rows, X)
        groups = self.sector_codes(symbols)
        sources = {c.source: out[:, self._column[c.source]] for c in R.CROSS_SECTION}
        for name, vec in apply_cross_section(R.CROSS_SECTION, sources, groups).items():
            out[:, self._column[name]] = vec
        return out

    def process_timestamp(self, ts, symbols: Sequence[str], bars: Mapping[str, np.ndarray],
                          seq: Iterable[int] | None = None) -> tuple[list[str], np.ndarray]:
        """All features for the bars of one complete timestamp (symbols sorted)."""
        order = np.argsort(np.asarray(symbols, dtype=object), kind="mergesort")
        syms = [symbols[i] for i in order]
        bars_sorted = {f: np.asarray(bars[f], dtype=np.float64)[order] for f in R.BAR_FIELDS}
        seq_sorted = None if seq is None else np.asarray(list(seq), dtype=np.int64)[order]
        ts_out = self.update_ts(ts, syms, bars_sorted, seq_sorted)
        return syms, self.cross_section(syms, ts_out)

    # -- serialization -------------------------------------------------------------
    def get_state(self, symbol: str) -> bytes:
        """The symbol's full state (both stages, side inputs, pending rows) as bytes."""
        s = self.slots[symbol]
        return self._pack_state(symbol, self.pending_fund.get(s, []), self.pending_alt.get(s, []),
                                [a[s] for a in self._state_arrays()])

    def states_later(self, symbols: Sequence[str]) -> Callable[[], dict[str, bytes]]:
        """``{s: get_state(s)}`` in two steps: copy the symbols' state rows now (one gather per array: a few
        ms for hundreds of symbols) and return the function that formats them later, e.g. in a thread while
        the engine goes on (it reads only the copies)."""
        symbols = list(symbols)
        slots = np.array([self.slots[x] for x in symbols], dtype=np.intp)
        rows = [a[slots] for a in self._state_arrays()]
        pend = [(list(self.pending_fund.get(x, [])), list(self.pending_alt.get(x, []))) for x in slots.tolist()]

        def build() -> dict[str, bytes]:
            return {sym: self._pack_state(sym, pend[i][0], pend[i][1], [r[i] for r in rows])
                    for i, sym in enumerate(symbols)}
        return build

    def _state_arrays(self) -> list[np.ndarray]:
        """Per-slot arrays of a symbol's state, in ``get_state`` order."""
        return [self.ts.table.F, self.ts.table.I, self.mkt.table.F, self.mkt.table.I, *self._side_arrays()]

    def _pack_state(self, symbol: str, pending_fund, pending_alt, rows) -> bytes:
        header = orjson.dumps({
            "format": _FORMAT, "program": self._program_hash(), "layout": self._layout_hash(), "symbol": symbol,
            "pending_fund": [[a, p, v.tobytes().hex()] for a, p, v in pending_fund],
            "pending_alt": [[d, j, _hexf(v)] for d, j, v in pending_alt],
        })
        return struct.pack("<I", len(header)) + header + b"".join(
            np.ascontiguousarray(r).astype(r.dtype.newbyteorder("<"), copy=False).tobytes() for r in rows)

    def set_state(self, symbol: str, blob: bytes) -> None:
        """Restore a symbol's state from ``get_state`` bytes (exact round trip)."""
        (hlen,) = struct.unpack_from("<I", blob)
        header = orjson.loads(blob[4:4 + hlen])
        if header.get("program") != self._program_hash():
            raise ValueError(f"state of {symbol} was written by another feature registry "
                             f"({header.get('program')}); it cannot be restored into this one")
        if header.get("format") != _FORMAT or header.get("layout") != self._layout_hash():
            raise ValueError(f"state of {symbol} has format {header.get('format')} / layout {header.get('layout')}; "
                             f"this engine reads format {_FORMAT} / layout {self._layout_hash()}")
        off = 4 + hlen
        want = (sum(stage.table.row_nbytes for stage in (self.ts, self.mkt))
                + sum(a[0].nbytes for a in self._side_arrays()))
        if len(blob) - off != want:
            raise ValueError(f"state of {symbol}: {len(blob) - off} bytes after the header, expected {want}"
                             f"{' (trailing bytes)' if len(blob) - off > want else ''}; corrupt state")
        s = self.slot(symbol)  # may grow the arrays: take them after
        sides = self._side_arrays()
        view = memoryview(blob)
        for stage in (self.ts, self.mkt):
            stage.table.load_row(s, view[off:off + stage.table.row_nbytes])
            off += stage.table.row_nbytes
        for a in sides:
            n = a[0].nbytes
            a[s] = np.frombuffer(view[off:off + n], dtype=a.dtype.newbyteorder("<")).reshape(a.shape[1:])
            off += n
        self.pending_fund.pop(s, None)
        self.pending_alt.pop(s, None)
        if header["pending_fund"]:
            self.pending_fund[s] = [(a, p, np.frombuffer(bytes.fromhex(v), dtype=np.float64).copy())
                                    for a, p, v in header["pending_fund"]]
        if header["pending_alt"]:
            self.pending_alt[s] = [(d, j, _unhexf(v)) for d, j, v in header["pending_alt"]]

    def state_nbytes(self, symbol: str) -> int:
        return len(self.get_state(symbol))

    def _side_arrays(self) -> list[np.ndarray]:
        return [self.last_ts, self.last_seq, self.n_bars, self.fund, self.fund_key, self.alt, self.alt_date]

    def _program_hash(self) -> str:
        return self.ts.program.hash + self.mkt.program.hash

    def _layout_hash(self) -> str:
        return self.ts.plan.layout_hash + self.mkt.plan.layout_hash


def warm_up(sectors: Mapping[str, str] | None = None) -> float:
    """Load the compiled kernels now, not on the first bar; return the seconds it took.

    numba loads each kernel from its on-disk cache on first use in a process (~0.3-0.5 s in all),
    which a worker would otherwise pay on its first live timestamp. Runs two timestamps of a
    throwaway three-symbol engine through both programs and the cross-section; touches no other
    engine's state."""
    import time
    t0 = time.perf_counter()
    eng = FeatureEngine(sectors=sectors, capacity=4)
    names = ["WARMUP_A", "WARMUP_B", "WARMUP_C"]
    base = np.datetime64("2000-01-03", "ns")
    for i in range(2):
        px = np.array([10.0, 20.0, 30.0]) * (1 + 0.01 * i)
        bars = {"open": px, "high": px * 1.01, "low": px * 0.99, "close": px, "volume": np.full(3, 1e6)}
        rows = eng.update_ts(base + np.timedelta64(i, "D"), names, bars, [i + 1] * 3)
        eng.cross_section(names, rows)
    return time.perf_counter() - t0


def _num(x) -> float:
    try:
        return float(x) if x is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _hexf(v: float) -> str:
    return np.float64(v).tobytes().hex()


def _unhexf(s: str) -> float:
    return float(np.frombuffer(bytes.fromhex(s), dtype=np.float64)[0])
