"""Scoring stage (split mode), keyed by timestamp: the whole universe of ``t`` in one call.

Consumes ``technic.features`` (rows of the per-symbol stage, keyed by timestamp, and their
partitions' watermarks; see ``stream.stages.symbol``). Rows of ``t`` are gathered per symbol
(a redelivered row overwrites an identical one; a row for a timestamp already scored is a
replay after a per-symbol worker restart and is dropped and counted; a malformed record - not
JSON, an unknown type, a missing field, a value of the wrong type, a row of the wrong length, a
partition outside ``0 <= p < n_partitions`` - is dead-lettered as ``schema`` before it changes
anything). Timestamp ``t`` closes, oldest first, when

1. **complete**: every input partition's watermark is past ``t``, or the partition marked ``t``
   complete (every symbol of its previous timestamp delivered ``t``; see ``stream.stages.symbol``)
   - the number of partitions comes with the watermarks, so the universe need not be known in
   advance; or
2. **grace**: every partition has reported that it is caught up with its input, each within
   the last ``alive_s`` seconds (per-symbol workers send a watermark every 0.25 s: a killed
   worker's last "caught up" must not count while it restarts), and no row arrived for
   ``grace_s`` seconds (the last timestamp of a replay, a quiet market); or
3. **stall**: no row and no watermark progress for ``stall_s`` seconds although some partition
   is not caught up (its worker is down for longer than a restart takes): the timestamp is
   scored without it and a ``partition_stalled`` alert names the partitions.

Closing runs the market program (per-symbol beta, correlation to the market: its state lives
here, stepped with the market return of the complete universe of ``t``, in timestamp order,
so it is exact), the cross-sectional transforms over the whole universe
(``FeatureEngine.cross_section``, the batch path's functions), and ``score_timestamp``: one
vectorized ``Scorer.predict`` with sector codes as groups, records keyed by symbol. A score is
a pure function of (model version, bars up to t), so re-emissions are identical.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from technic.features import registry as R
from technic.features.incremental import NAT, FeatureEngine

from stream.io.codecs import DEFAULT_MAX_BYTES, RecordError, deadletter_record
from stream.io.output import Output
from stream.io.timestamps import ts_ns, ts_string
from stream.stages import scoring_checkpoint
from stream.stages.alerts import AlertGate, make_alert
from stream.stages.history import FeatureHistory
from stream.stages.models import ModelSource, control_command
from stream.stages.records import (Stats, check_explain, feature_columns, run_deferred, score_timestamp,
                                   take_deferred)

import orjson


_NUMBER = (int, float)   # what orjson decodes a JSON number to (bool is neither)
_NULLABLE = frozenset({int, float, type(None)})
#: a watermark naming more input partitions than this is refused: one bogus record would hold every
#: timestamp open until the stall rule (a well-typed but wrong count below it still does)
MAX_PARTITIONS = 10_000


RECENT = 256   # closed timestamps whose scored symbols are kept (a late row vs a replayed one)


@dataclass
class ScoringConfig:
    grace_s: float = 2.0       # close the oldest timestamp this long after the last row, once all are caught up
    stall_s: float = 60.0      # ... or this long after the last progress even if a partition is not
    alive_s: float = 1.0       # a partition's caught_up counts for grace only if its watermark is this recent
    history_len: int = 32
    top_k: int = 5
    explain: str = "inline"    # "deferred": contributions on technic.explanations after the scores (records.py)
    alert_cooldown: int = 20


class ScoringStage:
    def __init__(self, models: ModelSource, sectors: Mapping[str, str] | None = None,
                 config: ScoringConfig | None = None, clock=time.time, extensions=()):
        self.cfg = config or ScoringConfig()
        self.models = models
        self.extensions = list(extensions)
        self.engine = FeatureEngine(sectors=sectors, capacity=512)   # only its market stage is used
        self.clock = clock
        self.n_ts = len(self.engine.ts_names)
        self.pending: dict[int, dict[str, tuple]] = {}
        self.wm: dict[int, int] = {}              # input partition -> watermark (ns)
        self.done: dict[int, int] = {}            # input partition -> latest timestamp it marked complete
        self.recent: dict[int, frozenset] = {}    # symbols scored at each of the last RECENT closed timestamps
        self.caught_up: dict[int, bool] = {}
        self.heard: dict[int, float] = {}         # input partition -> when its latest watermark was read
        self.n_partitions = 0
        self.last_closed = NAT
        self.last_progress = clock()
        self.stats = Stats()
        self.late_rows = 0
        self.gate = AlertGate(self.cfg.alert_cooldown)
        self.ring = FeatureHistory(len(R.FEATURE_NAMES), self.cfg.history_len, self.engine.capacity)
        self.restored_model: str | None = None   # model version a restored snapshot was written under
        self.deferred = check_explain(self.cfg.explain)
        self.close_ms: deque = deque(maxlen=1024)   # (wall, thread CPU) ms of the latest closes, for status()

    # -- input ---------------------------------------------------------------------------
    def on_record(self, raw: bytes, topic="features", partition=None, offset=None,
                  received: float | None = None) -> list[Output]:
        try:
            v = orjson.loads(raw)
            kind = v["type"]
            if kind == "row":
                return self._row(v, received, (topic, partition, offset, raw))
            if kind == "wm":
                return self._watermark(v)
            raise KeyError(f"type {kind!r}")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            return [self._dead("schema", f"features record: {e}", topic, partition, offset, raw)]

    def _row(self, v: dict, received, origin) -> list[Output]:
        # every field is checked before anything changes (KeyError/TypeError/ValueError: dead letter)
        ts, sym, vals, close, recv = v["ts"], v["symbol"], v["row"], v.get("close"), v.get("received")
        if type(ts) is not str or type(sym) is not str or not sym or type(vals) is not list:
            raise TypeError(f"row: ts {ts!r:.40} and symbol {sym!r:.40} must be strings, row a list")
        if len(vals) != self.n_ts:
            raise ValueError(f"row of {len(vals)} values, expected {self.n_ts} (another feature registry?)")
        kinds = set(map(type, vals))   # one C-level pass: what orjson decoded the values to
        if not kinds <= _NULLABLE or not all(x is None or type(x) in _NUMBER for x in (close, recv)):
            raise TypeError("row: row values, close and received must be numbers or null")
        if type(None) in kinds:
            vals = [np.nan if x is None else x for x in vals]
        t = ts_ns(ts)
        row = np.array(vals, dtype=np.float64)
        if t <= self.last_closed:
            scored = self.recent.get(t)
            if scored is None or sym in scored:
                self.late_rows += 1   # a per-symbol worker replaying after a restart: already scored
                return []
            # not a replay: t was closed without this symbol (a symbol absent from its partition's
            # previous timestamp whose row came after the completeness mark - the one-process mode's
            # late bar -, or a partition left out by the grace or stall rule)
            return [self._dead("out_of_order", f"row of {sym} at {ts} arrived after {ts} was closed without it "
                                               f"(completeness mark, grace or stall rule): not scored", *origin)]
        self.stats.bars_in += 1
        close = np.nan if close is None else float(close)
        recv = float(recv or self.clock()) if received is None else received
        self.pending.setdefault(t, {})[v["symbol"]] = (row, close, recv)
        self.last_progress = self.clock()
        return []

    def _watermark(self, v: dict) -> list[Output]:
        p, n, wm, caught_up = v["partition"], v["n_partitions"], v["wm"], v["caught_up"]
        done = v.get("complete")   # absent in records of per-symbol workers before the mark existed
        if (type(p) is not int or type(n) is not int or not 0 <= p < n <= MAX_PARTITIONS
                or type(caught_up) is not bool or not (wm is None or type(wm) is str)
                or not (done is None or (type(done) is str and wm is not None))):
            raise ValueError(f"watermark: partition {p!r:.20} of {n!r:.20} (at most {MAX_PARTITIONS}), "
                             f"wm {wm!r:.40}, caught_up {caught_up!r:.20}, complete {done!r:.40}")
        w = NAT if wm is None else ts_ns(wm)
        d = NAT if done is None else ts_ns(done)
        if d > w:
            raise ValueError(f"watermark: complete {done} after wm {wm}")
        if d > self.done.get(p, NAT):
            self.last_progress = self.clock()
            self.done[p] = d
        self.n_partitions = max(self.n_partitions, n)
        if w > self.wm.get(p, NAT):
            self.last_progress = self.clock()
        self.wm[p] = max(self.wm.get(p, NAT), w)
        self.caught_up[p] = caught_up
        self.heard[p] = self.clock()
        return []

    def on_control(self, raw: bytes, topic="control", partition=None, offset=None) -> list[Output]:
        """A ``technic.control`` record: a model promotion / reload switches at the next timestamp
        (as in the one-process mode); a malformed command or an unknown version is dead-lettered."""
        try:
            done = control_command(self.models, raw, DEFAULT_MAX_BYTES)
        except RecordError as e:
            return [self._dead(e.reason_code, e.reason, topic, partition, offset, raw)]
        if done is None:
            return []
        return self._alert("model_reload", "info", "model_version", None, None, None, done[0], done[1])

    # -- closing -------------------------------------------------------------------------
    def _covered(self, t: int) -> bool:
        """Every input partition has emitted all its rows of ``t`` (watermark past it, or marked complete)."""
        if self.n_partitions == 0 or len(self.wm) < self.n_partitions:
            return False
        return all(self.wm.get(p, NAT) > t or self.done.get(p, NAT) >= t for p in range(self.n_partitions))

    def poll(self, now: float | None = None) -> list[Output]:
        now = self.clock() if now is None else now
        out: list[Output] = []
        while self.pending:
            t = min(self.pending)
            if self._covered(t):
                out += self._close(t)
                continue
            quiet = now - self.last_progress
            all_caught = self.n_partitions > 0 and all(
                self.caught_up.get(p, False) and now - self.heard.get(p, -np.inf) <= self.cfg.alive_s
                for p in range(self.n_partitions))
            if all_caught and quiet >= self.cfg.grace_s:
                out += self._close(t)
            elif quiet >= self.cfg.stall_s:
                lagging = [p for p in range(max(self.n_partitions, 1)) if not self.caught_up.get(p, False)]
                out += self._alert("partition_stalled", "warning", "partitions_lagging", len(lagging), 0, None,
                                   ts_string(t), f"no progress for {quiet:.0f}s from partition(s) {lagging}: "
                                                 f"{ts_string(t)} scored without them")
                out += self._close(t)
            else:
                break
        return out

    def flush(self) -> list[Output]:
        out = []
        while self.pending:
            out += self._close(min(self.pending))
        return out

    def _close(self, t: int) -> list[Output]:
        w0, c0 = time.perf_counter(), time.thread_time()
        out = self._close_timestamp(t)
        self.close_ms.append((1e3 * (time.perf_counter() - w0), 1e3 * (time.thread_time() - c0)))
        return out

    def _close_timestamp(self, t: int) -> list[Output]:
        bucket = self.pending.pop(t)
        names = sorted(bucket)
        self.recent[t] = frozenset(names)
        if len(self.recent) > RECENT:
            del self.recent[min(self.recent)]
        ts_matrix = np.stack([bucket[s][0] for s in names])
        for s in names:
            self.engine.slot(s)
        feats = self.engine.cross_section(names, ts_matrix)
        self.last_closed = t
        self.stats.timestamps_closed += 1
        self.stats.bars_applied += len(names)
        out = []
        swapped = self.models.at_boundary()
        if swapped:
            out += self._alert("model_reload", "info", "model_version", None, None, None, ts_string(t),
                               f"switched to model {swapped}")
        elif self.restored_model is not None and self.restored_model != self.models.version:
            out += self._alert("model_reload", "info", "model_version", None, None, None, ts_string(t),
                               f"restored state was scored by model {self.restored_model}; "
                               f"now scoring with {self.models.version}")
        self.restored_model = None
        scorer = self.models.current
        seq_len = int(getattr(scorer, "seq_len", 0) or 0)
        self.ring.reserve(seq_len)
        if seq_len:
            self.ring.push([self.engine.slots[s] for s in names], feats, self.engine.capacity)
        if scorer is None:
            return out
        hist = self.ring.window(self.engine.slots, names, feature_columns(scorer), seq_len) if seq_len else None
        closes = np.array([bucket[s][1] for s in names])
        out += score_timestamp(t, names, feats, scorer, hist, self.engine.sector_codes(names), closes,
                               self.cfg.top_k, self.extensions, self.stats, self.deferred)
        self.stats.latency.observe(self.clock() - np.array([bucket[s][2] for s in names]))
        return out

    def explanations(self) -> list[Output]:
        """Explanation records of the timestamps closed since the last call (``explain="deferred"``)."""
        return run_deferred(self.deferred)

    def deferred_jobs(self) -> list:
        """The same as jobs, handed over (``stream.service.explainer`` runs them in the background)."""
        return take_deferred(self.deferred)

    # -- checkpoints (stream.stages.scoring_checkpoint) -------------------------------------
    def snapshot(self, offsets: dict[int, int]) -> Output:
        """The whole state as one snapshot record, with the features offsets it reflects."""
        return scoring_checkpoint.snapshot(self, offsets)

    def capture(self, offsets: dict[int, int]):
        """``snapshot`` in two steps: copy the state now, build the record later (off the loop)."""
        return scoring_checkpoint.capture(self, offsets)

    def restore(self, snap: dict) -> dict[int, int]:
        """Load a snapshot into this fresh stage; return the features offsets to resume from."""
        return scoring_checkpoint.restore(self, snap)

    def _dead(self, code, reason, topic, partition, offset, raw) -> Output:
        self.stats.deadletter[code] += 1
        return Output("deadletter", str(topic).encode(), deadletter_record(code, reason, topic, partition, offset, raw))

    def _alert(self, type_, severity, metric, value, threshold, window, ts, message, symbol=None) -> list[Output]:
        if not self.gate.allow((type_, symbol, None), self.stats.timestamps_closed):
            return []
        self.stats.alerts[type_] += 1
        rec = make_alert(type_, severity, metric, value, threshold, window, self.models.version, ts, message,
                         symbol=symbol)
        return [Output("alerts", (symbol or type_).encode(), rec)]

    def status(self) -> dict:
        return {"model_version": self.models.version, "pending_timestamps": len(self.pending),
                "n_partitions": self.n_partitions, "late_rows": self.late_rows,
                "last_closed": None if self.last_closed == NAT else ts_string(self.last_closed),
                **self.close_timing(), **self.stats.as_dict()}

    def close_timing(self) -> dict:
        """Wall and CPU time of closing a timestamp (market, cross-section, predict, records) over the
        latest closes: p50 / p99 / max ms. CPU well above the quiet figure for the same model and
        universe means the cores are shared (``bench/stream.py`` reports both)."""
        if not self.close_ms:
            return {"closes_timed": 0}
        a = np.asarray(self.close_ms)
        out: dict = {"closes_timed": len(a)}
        for j, name in enumerate(("close_wall_ms", "close_cpu_ms")):
            out[name] = {"p50": round(float(np.percentile(a[:, j], 50)), 2),
                         "p99": round(float(np.percentile(a[:, j], 99)), 2), "max": round(float(a[:, j].max()), 2)}
        return out
