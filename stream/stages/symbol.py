"""Per-symbol stage (split mode): each symbol's time-series state, updated as its bars arrive.

Consumes the bars, fundamentals and alt records of some input partitions (keyed by symbol,
so one symbol's records are in one partition, in order). Per admitted bar it steps the
symbol's time-series program (``FeatureEngine.update_ts``, one symbol, one compiled call) and
emits the symbol's row to ``technic.features``, keyed by the bar timestamp::

    {"type": "row", "ts", "symbol", "partition", "seq", "close", "row": [n_ts floats, NaN as null]}

and, after each handled batch and on every heartbeat, one watermark per owned partition::

    {"type": "wm", "partition", "n_partitions", "wm": ts of its latest bar, "caught_up": bool,
     "complete": ts or null}

"partition p has emitted every bar before ``wm``": bars of a partition arrive in timestamp
order (the publisher's contract), so once a bar of ``t`` is seen, every bar before ``t`` is out.
``complete`` = ``wm`` once every symbol that delivered the partition's previous timestamp has
delivered ``wm`` too: the partition's rows of ``wm`` are all out, and the scoring stage need not
wait for a bar of a later timestamp (which, for live bars, comes one bar interval later). It is
the one-process mode's rule (``ScoringPipeline._complete``: every active symbol delivered ``t``),
per partition, with the same caveat: a symbol absent from the previous timestamp (a new listing,
a symbol back after a gap) whose bar comes after the mark arrives late and is dead-lettered by
the scoring stage, as the one-process mode dead-letters a bar of a closed timestamp. The mark is
given only once the previous timestamp was seen whole by this process (not the first timestamp
after a start or a restore, which may have begun before it).
``caught_up`` says the worker has read its partitions to their end (then the scoring stage may
close the last timestamp after its grace period instead of waiting for a later bar).

The market program (beta, correlation to the market) is NOT here: it needs the market return of
``t``, i.e. every symbol of ``t``. It lives in the scoring stage, which sees the whole universe
of every timestamp in order, so it is exact without a feedback topic.

Admission (decode, key = symbol, sequence idempotency) is the one-process pipeline's
(``stream.stages.admission``); a rejected record is dead-lettered with its reason and changes
nothing. The whole state of a partition (engine + admission) snapshots to bytes with the
input offsets it reflects (``stream.stages.checkpoint``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from technic.errors import OrderError
from technic.features.incremental import NAT, FeatureEngine

from stream.io.codecs import RecordError, deadletter_record
from stream.io.output import Output
from stream.io.timestamps import ts_string
from stream.stages.admission import NO_KEY, BarAdmission, apply_side_record, bar_values
from stream.stages.records import Stats



@dataclass
class SymbolConfig:
    universe: frozenset | None = None  # if set, bars of other symbols are dead-lettered (unknown_symbol)
    seq_window: int = 4096
    max_payload: int = 65536


class SymbolStage:
    """Admission + incremental time-series features per symbol; rows and watermarks out."""

    def __init__(self, sectors=None, config: SymbolConfig | None = None, n_partitions: int = 1):
        self.cfg = config or SymbolConfig()
        self.engine = FeatureEngine(sectors=sectors, capacity=64)
        self.admission = BarAdmission(self.cfg.universe, self.cfg.seq_window, self.cfg.max_payload)
        self.n_partitions = n_partitions
        self.partition_of: dict[str, int] = {}   # symbol -> input partition it arrives on
        self.watermark: dict[int, int] = {}      # input partition -> timestamp of its latest admitted bar
        # completeness per partition: symbols of the previous / current timestamp, and how many
        # timestamp boundaries this process has seen in it (the previous one is whole from 2 on)
        self._prev_syms: dict[int, set] = {}
        self._cur_syms: dict[int, set] = {}
        self._boundaries: dict[int, int] = {}
        self.stats = Stats()

    # -- inputs -----------------------------------------------------------------------
    def on_bar(self, raw: bytes, topic: str = "bars", partition: int = 0, offset: int | None = None,
               received: float | None = None, key=NO_KEY) -> list[Output]:
        return self.on_bars([(raw, topic, partition, offset, received, key)])

    def on_bars(self, items) -> list[Output]:
        """Bars ``(raw, topic, partition, offset, received, key)`` in consumption order (each partition's
        in offset order). Each is admitted in that order (a rejection is dead-lettered and changes
        nothing); the admitted ones are then applied one timestamp at a time, all symbols of a
        timestamp in one ``update_ts`` call (a symbol's bars come in timestamp order, so the order of
        each symbol's updates is unchanged and every row is what one call per bar gives, at a fraction
        of the per-call cost); rows out in timestamp order, then completeness tracking in consumption
        order."""
        out: list[Output] = []
        admitted = []
        for raw, topic, partition, offset, received, key in items:
            self.stats.bars_in += 1
            try:
                bar = self.admission.admit_counted(raw, key, NAT, self.stats)
            except RecordError as e:
                out.append(self._dead(e.reason_code, e.reason, topic, partition, offset, raw))
                continue
            if bar is not None:
                admitted.append((bar, topic, partition, offset, raw, time.time() if received is None else received))
        if not admitted:
            return out
        applied = set()
        by_t: dict[int, list] = {}
        for x in admitted:
            by_t.setdefault(x[0].t, []).append(x)
        for t in sorted(by_t):
            out += self._apply(t, by_t[t], applied)
        for bar, _, partition, _, _, _ in admitted:
            if id(bar) in applied:
                self._track(partition, bar.t, bar.rec["symbol"])
        return out

    def _apply(self, t: int, run: list, applied: set) -> list[Output]:
        """Step the symbols of ``run`` (admitted bars of timestamp ``t``, distinct symbols) in one call."""
        recs = [x[0].rec for x in run]
        syms = [r["symbol"] for r in recs]
        vals = bar_values(recs)
        seqs = [int(r["seq"]) for r in recs]
        try:
            rows = self.engine.update_ts(t, syms, vals, seqs)
        except OrderError as e:  # admission already checked the order; never crash the worker
            if len(run) == 1:
                bar, topic, partition, offset, raw, _ = run[0]
                return [self._dead("out_of_order", str(e), topic, partition, offset, raw)]
            return [o for x in run for o in self._apply(t, [x], applied)]   # find the one refused
        ts = ts_string(t)
        out = []
        for i, (bar, topic, partition, offset, raw, received) in enumerate(run):
            applied.add(id(bar))
            self.stats.bars_applied += 1
            if bar.missing:
                self.stats.gaps += 1
            self.partition_of[syms[i]] = partition
            out.append(Output("features", ts.encode(), {
                "type": "row", "ts": ts, "symbol": syms[i], "partition": partition, "seq": seqs[i],
                "close": vals["close"][i], "received": received, "row": rows[i]}))
        return out

    def on_fundamental(self, raw: bytes, topic="fundamentals", partition=0, offset=None, key=NO_KEY) -> list[Output]:
        try:
            self.partition_of[apply_side_record(self.engine, "fundamentals", raw, key, self.cfg.max_payload)] = partition
        except RecordError as e:
            return [self._dead(e.reason_code, e.reason, topic, partition, offset, raw)]
        return []

    def on_alt(self, raw: bytes, topic="alt", partition=0, offset=None, key=NO_KEY) -> list[Output]:
        try:
            self.partition_of[apply_side_record(self.engine, "alt", raw, key, self.cfg.max_payload)] = partition
        except RecordError as e:
            return [self._dead(e.reason_code, e.reason, topic, partition, offset, raw)]
        return []

    # -- watermarks -----------------------------------------------------------------------
    def _track(self, p: int, t: int, sym: str) -> None:
        w = self.watermark.get(p, NAT)
        if t > w:   # a new timestamp in this partition: the current one becomes the previous one
            if w != NAT:
                self._boundaries[p] = self._boundaries.get(p, 0) + 1
            self._prev_syms[p] = self._cur_syms.get(p, set())
            self._cur_syms[p] = {sym}
            self.watermark[p] = t
        elif t == w:
            self._cur_syms.setdefault(p, set()).add(sym)

    def forget_timestamps(self, p: int) -> None:
        """Start the completeness tracking of ``p`` over (a restore: its state came from elsewhere)."""
        self._boundaries.pop(p, None)
        self._prev_syms.pop(p, None)
        self._cur_syms.pop(p, None)

    def complete(self, p: int) -> int:
        """The partition's latest timestamp if every symbol of its previous one delivered it, else NAT."""
        if self._boundaries.get(p, 0) < 2 or not self._prev_syms[p] <= self._cur_syms[p]:
            return NAT
        return self.watermark[p]

    def watermarks(self, partitions, caught_up: bool = False) -> list[Output]:
        """One watermark record per owned input partition (``wm`` null before its first bar)."""
        out = []
        for p in sorted(partitions):
            w, c = self.watermark.get(p, NAT), self.complete(p)
            out.append(Output("features", b"wm", {
                "type": "wm", "partition": int(p), "n_partitions": self.n_partitions,
                "wm": None if w == NAT else ts_string(w), "caught_up": bool(caught_up),
                "complete": None if c == NAT else ts_string(c)}))
        return out

    def symbols_of(self, partition: int) -> list[str]:
        return sorted(s for s, p in self.partition_of.items() if p == partition)

    def _dead(self, code, reason, topic, partition, offset, raw) -> Output:
        self.stats.deadletter[code] += 1
        return Output("deadletter", str(topic).encode(), deadletter_record(code, reason, topic, partition, offset, raw))

    def status(self) -> dict:
        return {"symbols": len(self.partition_of), "watermarks": {p: ts_string(w) for p, w in self.watermark.items()},
                **self.stats.as_dict()}
