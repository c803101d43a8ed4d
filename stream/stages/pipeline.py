"""The scoring pipeline: what the worker does with each record, free of Faust.

Records come in as raw bytes with their origin (topic, partition, offset, Kafka key);
results go out as ``Output(kind, key, value)`` for the caller to send. The
same object is driven by the Faust agents, by the start-up catch-up replay and
by tests, so the behaviour under test is the behaviour in production.

Per bar:
1. admission (``stream.stages.admission``): decode + JSON Schema + sanity checks, the Kafka key
   must be the symbol, idempotency by the publisher's per-symbol sequence number (an exact
   redelivery is skipped and counted; a conflicting one, a late, duplicate or out-of-order
   bar is dead-lettered); a rejected record goes to the dead-letter topic keyed by its source
   topic, with the reason, and changes nothing; a jump in ``seq`` raises a ``data_gap`` alert;
2. the symbol's time-series state is stepped **at once** (``FeatureEngine.update_ts``, one
   symbol, one compiled call, ~20 us) and its time-series row is buffered under the bar
   timestamp (the per-symbol stage of the split mode, in process).

A timestamp closes when every active symbol has delivered a bar at or after
it (universe complete: the batch that brings the last active symbol's bar of ``t`` closes
``t``, without waiting for a bar of the next timestamp; for the very first timestamp, whose
universe is not known yet, only once a later bar shows the first one is over); or when the
input has been quiet (no bar at all) for ``grace_s`` seconds; or when more than
``max_pending`` later timestamps are already buffered (event-time watermark). Symbols that
missed a timestamp closed by the last two rules become inactive until they deliver
again. Quietness is measured on the input, not per timestamp, so a worker
that lags behind its topic never closes a timestamp whose remaining bars are
simply not read yet. Closing costs only the market stage and the cross-sectional transforms
over the buffered rows (``FeatureEngine.cross_section``), the model, and one score per symbol
keyed by (symbol, timestamp, model version). The results are those of stepping all symbols
of ``t`` in one call at the close (a symbol's state evolves only with its own bars, bit for
bit either way); point-in-time fundamentals and alt values apply at the symbol's first bar
on/after their date *that arrives after them* (the direct ingest reads side topics before
bars within each batch; replays publish them first).

Sequence models (LSTM/Transformer in the bundle, ``Scorer.seq_len > 0``) read each symbol's
last ``seq_len`` rows normalized against their own timestamp's cross-section. The pipeline
keeps them in a per-symbol ring of ``history_len`` float32 rows, filled at every closed
timestamp while the served model has a sequence model (or always, with ``history_always``).
The worker loads the model before its catch-up replay, so the ring is full when scoring
starts and stream scores equal the batch path's (``technic.models.scoring.score_panel``)
exactly. Hot-swapping FROM a tree-only TO a sequence model mid-stream starts with an empty
ring (windows zero-padded like a new listing's) unless ``history_always`` is set; that costs
one cross-sectional rank transform of all features per timestamp.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from technic.errors import OrderError
from technic.features import registry as R
from technic.features.incremental import NAT, FeatureEngine

from stream.stages.admission import NO_KEY, BarAdmission, apply_side_record, bar_values
from stream.stages.alerts import AlertGate, make_alert
from stream.io.codecs import RecordError, deadletter_record
from stream.io.output import Output
from stream.stages.history import FeatureHistory
from stream.stages.models import ModelSource, control_command
from stream.stages.records import (  # noqa: F401 (re-exported)
    ExtensionResult, Stats, check_explain, feature_columns, run_deferred, score_timestamp, take_deferred)
from stream.io.timestamps import ts_ns, ts_string  # noqa: F401 (ts_ns re-exported)



@dataclass
class PipelineConfig:
    grace_s: float = 2.0          # close the oldest timestamp after this long without any new bar
    max_pending: int = 2          # ... or when more than this many later timestamps are buffered
    history_len: int = 32         # normalized rows kept per symbol for sequence models (grown to a model's seq_len)
    history_always: bool = False  # keep that history even while the model has no sequence model (see below)
    universe: frozenset | None = None  # if set, bars of other symbols are dead-lettered (unknown_symbol)
    seq_window: int = 4096        # applied bars per symbol whose content a redelivery is checked against
    top_k: int = 5                # feature contributions per score (0 = none)
    explain: str = "inline"       # "inline": in the score record; "deferred": on technic.explanations, after the scores
    score_from: str | None = None  # bars before this timestamp only build state (warm-up): no score, no drift
    max_payload: int = 65536
    alert_cooldown: int = 20      # timestamps between repeats of one alert
    extreme_return: float = 0.4   # |1-bar return| above this raises an alert


class ScoringPipeline:
    """Per-symbol incremental state + per-timestamp cross-section + model scoring."""

    def __init__(self, models: ModelSource, sectors: Mapping[str, str] | None = None,
                 config: PipelineConfig | None = None, clock=time.time, extensions=()):
        self.cfg = config or PipelineConfig()
        # objects with on_scored(ts_ns, symbols, features, closes, scores, scorer) -> ExtensionResult
        # (online learners, drift detectors); see ExtensionResult
        self.extensions = list(extensions)
        self.models = models
        self.engine = FeatureEngine(sectors=sectors, capacity=512)
        self.clock = clock
        self.pending: dict[int, dict[str, tuple[dict, float]]] = {}
        self.last_input = 0.0             # receive time of the latest accepted bar / finished batch
        self.busy = 0                     # > 0 while the caller is handling a batch (not quiet)
        self.admission = BarAdmission(self.cfg.universe, self.cfg.seq_window, self.cfg.max_payload)
        self.seen_ts = self.admission.seen_ts      # symbol -> last admitted bar timestamp (ns)
        self.seen_seq = self.admission.seen_seq    # symbol -> last admitted seq
        self.active: set[str] = set()
        self.last_closed = NAT
        self.max_seen = NAT
        # do not score timestamps at or before this (the warm-up before score_from; the catch-up)
        self.suppress_until = NAT if not self.cfg.score_from else ts_ns(self.cfg.score_from) - 1
        self.stats = Stats()
        self.gate = AlertGate(self.cfg.alert_cooldown)
        self._feature_index = {n: i for i, n in enumerate(R.FEATURE_NAMES)}
        self._ret_col = self._feature_index["ret_1"]
        self.ring = FeatureHistory(len(R.FEATURE_NAMES), self.cfg.history_len, self.engine.capacity)
        self.deferred = check_explain(self.cfg.explain)

    # -- inputs -------------------------------------------------------------------
    def on_bar(self, raw: bytes, topic: str = "bars", partition: int | None = None,
               offset: int | None = None, received: float | None = None, key=NO_KEY) -> list[Output]:
        """One bar record (raw bytes and its Kafka origin); see ``stream.stages.admission`` for the checks."""
        self.stats.bars_in += 1
        received = self.clock() if received is None else received
        try:
            bar = self.admission.admit_counted(raw, key, self.last_closed, self.stats)
        except RecordError as e:
            return [self._dead(e.reason_code, e.reason, topic, partition, offset, raw)]
        if bar is None:
            return []
        rec, t, sym = bar.rec, bar.t, bar.rec["symbol"]
        out = []
        if bar.missing:
            self.stats.gaps += 1
            out += self._alert("data_gap", "warning", "missing_seq", bar.missing, 0, None,
                               rec["ts"], f"{sym}: {bar.missing} bar(s) missing before seq {rec['seq']} "
                                          f"(last seq {bar.prev_seq})", symbol=sym)
        vals = bar_values([rec])
        try:
            row = self.engine.update_ts(t, (sym,), vals, (int(rec["seq"]),))[0]
        except OrderError as e:  # cannot happen after the admission checks; never crash the worker
            return out + [self._dead("out_of_order", str(e), topic, partition, offset, raw)]
        self.max_seen = max(self.max_seen, t)
        self.active.add(sym)
        self.pending.setdefault(t, {})[sym] = (row, vals["close"][0], received)
        self.last_input = max(self.last_input, received)
        return out

    def on_fundamental(self, raw: bytes, topic="fundamentals", partition=None, offset=None, key=NO_KEY) -> list[Output]:
        try:
            apply_side_record(self.engine, "fundamentals", raw, key, self.cfg.max_payload)
        except RecordError as e:
            return [self._dead(e.reason_code, e.reason, topic, partition, offset, raw)]
        return []

    def on_alt(self, raw: bytes, topic="alt", partition=None, offset=None, key=NO_KEY) -> list[Output]:
        try:
            apply_side_record(self.engine, "alt", raw, key, self.cfg.max_payload)
        except RecordError as e:
            return [self._dead(e.reason_code, e.reason, topic, partition, offset, raw)]
        return []

    def on_control(self, raw: bytes, topic="control", partition=None, offset=None, key=None) -> list[Output]:
        try:
            done = control_command(self.models, raw, self.cfg.max_payload)
        except RecordError as e:
            return [self._dead(e.reason_code, e.reason, topic, partition, offset, raw)]
        if done is None:
            return []
        return self._alert("model_reload", "info", "model_version", None, None, None, done[0], done[1])

    # -- closing timestamps --------------------------------------------------------
    def poll(self, now: float | None = None) -> list[Output]:
        """Close every timestamp that is complete or past its grace period, in order."""
        now = self.clock() if now is None else now
        out: list[Output] = []
        while self.pending:
            t = min(self.pending)
            # complete: every active symbol delivered t, and either a later bar was seen
            # (watermark) or a previous timestamp fixed the universe (not the very first one)
            if self._complete(t) and (self.max_seen > t or self.last_closed != NAT):
                out += self._close(t)
            elif self._quiet(now) or len(self.pending) > self.cfg.max_pending + 1:
                why = (f"input quiet for {self.cfg.grace_s}s" if self._quiet(now)
                       else f"{len(self.pending) - 1} later timestamps already buffered")
                missing = sorted(s for s in self.active if self.seen_ts.get(s, NAT) < t)
                self.active.difference_update(missing)
                for s in missing:
                    out += self._alert("stale_symbol", "warning", "bars_missing", 1, 0, None, ts_string(t),
                                       f"{s}: no bar for {ts_string(t)} ({why}); "
                                       f"inactive until it delivers again", symbol=s)
                out += self._close(t)
            else:
                break
        return out

    def _complete(self, t: int) -> bool:
        """Every active symbol delivered a bar at or after ``t`` (the oldest pending timestamp)."""
        # each such symbol's latest bar is buffered under some pending timestamp >= t: fewer
        # buffered bars than active symbols settles it without a scan (the common case while
        # the bars of t are still arriving)
        if sum(len(b) for b in self.pending.values()) < len(self.active):
            return False
        return min((self.seen_ts.get(s, NAT) for s in self.active), default=NAT) >= t

    def _quiet(self, now: float) -> bool:
        return self.busy == 0 and now - self.last_input >= self.cfg.grace_s

    def batch_started(self) -> None:
        """The caller starts handling a fetched batch: the input is not quiet until it is done."""
        self.busy += 1

    def batch_done(self, now: float | None = None) -> None:
        """The batch (including sending its outputs) is done: quietness counts from now."""
        self.busy = max(0, self.busy - 1)
        self.last_input = max(self.last_input, self.clock() if now is None else now)

    def flush(self) -> list[Output]:
        """Close all pending timestamps now (end of a bounded replay)."""
        out = []
        while self.pending:
            t = min(self.pending)
            self.active = {s for s in self.active if self.seen_ts.get(s, NAT) >= t} | set(self.pending[t])
            out += self._close(t)
        return out

    def _close(self, t: int) -> list[Output]:
        bucket = self.pending.pop(t)
        names = sorted(bucket)
        rows = [bucket[s] for s in names]
        # the time-series rows were stepped as the bars arrived: the market and cross-sectional stages
        feats = self.engine.cross_section(names, np.stack([r[0] for r in rows]))
        self.last_closed = t
        self.stats.timestamps_closed += 1
        self.stats.bars_applied += len(names)
        out = self._data_quality(t, names, feats)
        swapped = self.models.at_boundary()
        if swapped:
            out += self._alert("model_reload", "info", "model_version", None, None, None, ts_string(t),
                               f"switched to model {swapped}")
        scorer = self.models.current
        seq_len = int(getattr(scorer, "seq_len", 0) or 0)
        self.ring.reserve(seq_len)
        if self.ring.length and (self.cfg.history_always or seq_len):
            self.ring.push([self.engine.slots[s] for s in names], feats, self.engine.capacity)
        if scorer is None or t <= self.suppress_until:
            return out
        out += self._score(t, names, feats, scorer, [r[2] for r in rows], np.array([r[1] for r in rows]))
        return out

    def _score(self, t, names, feats, scorer, received, closes) -> list[Output]:
        seq_len = int(getattr(scorer, "seq_len", 0) or 0)
        hist = self.history(names, feature_columns(scorer), seq_len) if seq_len else None
        groups = self.engine.sector_codes(names)
        out = score_timestamp(t, names, feats, scorer, hist, groups, closes, self.cfg.top_k, self.extensions,
                              self.stats, self.deferred)
        self.stats.latency.observe(self.clock() - np.asarray(received, dtype=np.float64))  # one per score
        return out

    def explanations(self) -> list[Output]:
        """The explanation records of the timestamps scored since the last call (``explain="deferred"``;
        the caller sends them after those timestamps' scores)."""
        return run_deferred(self.deferred)

    def deferred_jobs(self) -> list:
        """The same as jobs, handed over (``stream.service.explainer`` runs them in the background)."""
        return take_deferred(self.deferred)

    def history(self, names, cols, seq_len: int) -> np.ndarray:
        """(k, seq_len, len(cols)) last normalized rows per symbol (``FeatureHistory.window``)."""
        return self.ring.window(self.engine.slots, names, cols, seq_len)

    def _data_quality(self, t, names, feats) -> list[Output]:
        ret = feats[:, self._ret_col]
        out = []
        for i in np.flatnonzero(np.abs(np.nan_to_num(ret)) > self.cfg.extreme_return):
            out += self._alert("extreme_return", "warning", "ret_1", ret[i], self.cfg.extreme_return, 1,
                               ts_string(t), f"{names[i]}: 1-bar return {ret[i]:+.1%}", symbol=names[i])
        return out

    # -- helpers ---------------------------------------------------------------------
    def _dead(self, code, reason, topic, partition, offset, raw) -> Output:
        """A dead letter, keyed by its source topic (the dead-letter topic's documented key)."""
        self.stats.deadletter[code] += 1
        return Output("deadletter", str(topic).encode(), deadletter_record(code, reason, topic, partition, offset, raw))

    def _alert(self, type_, severity, metric, value, threshold, window, ts, message, symbol=None,
               feature=None) -> list[Output]:
        if not self.gate.allow((type_, symbol, feature), self.stats.timestamps_closed):
            return []
        self.stats.alerts[type_] += 1
        rec = make_alert(type_, severity, metric, value, threshold, window, self.models.version, ts, message,
                         symbol=symbol, feature=feature)
        return [Output("alerts", (symbol or type_).encode(), rec)]

    def status(self) -> dict[str, Any]:
        return {"model_version": self.models.version, "pending_timestamps": len(self.pending),
                "active_symbols": len(self.active), "last_closed": None if self.last_closed == NAT
                else ts_string(self.last_closed), **self.stats.as_dict()}
