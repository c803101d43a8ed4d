"""``OnlineLayer``: the ScoringPipeline extension (delayed labels + River learners + drift alerts).

Called once per scored timestamp with all its symbols (``on_scored``), it

1. z-scores each horizon's batch score across the symbols and rank-gausses the model's features (the
   same transform the batch model reads), predicts the online score per horizon (the batch z-score
   until ``warmup`` labelled rows were learned), and stores (scores, online scores, inputs) in the
   ``DelayedLabelBuffer``;
2. for labels that matured at this timestamp: ``learn_one`` per row (target = cross-sectional gauss
   rank of the realized excess return) and, on the monitored horizon, the drift detectors, fed one
   value per origin timestamp (the rows of one timestamp are not independent draws): the mean squared
   error of the z-scored score vs that target (ADWIN, and Page-Hinkley "up"), the daily RankIC (ADWIN
   + rolling-``ic_window`` mean below ``ic_threshold``). A degradation is critical only while the model
   ranks the wrong way (rolling RankIC <= ``ic_critical``), else a warning: daily RankIC is so noisy
   for signals this weak that a 20-timestamp mean reached -0.12 inside the model's own training period;
3. PSI of every model feature over tumbling ``psi_window``-timestamp windows vs the training deciles
   of the model's registry manifest, counting a symbol's value only once the symbol has more bars than
   the feature's lookback (a value in its warm-up is not from the trained distribution); the
   dead-letter rate from the bound pipeline's stats.

**Warm-up.** No drift alert is emitted during the first ``detector_warmup`` scored timestamps after a
start or a model change: the detectors learn their baseline meanwhile.

**One PSI alert per window**, naming the features above ``psi_threshold`` worst first (the ``feature``
field is the worst); critical when the worst is above ``psi_severe``. The defaults are calibrated on
the shipped data (``tests/test_alert_calibration.py``): a window of 20 timestamps x ~100 symbols is
compared with the pooled training distribution, so a market regime alone moves the PSI of volatility
and trend features to ~1.5 inside the training period itself; the textbook 0.1 / 0.25 thresholds
(independent samples) would alert on every window.

Alerts go through ``stream.stages.alerts.make_alert`` and an ``AlertGate`` (``cooldown`` timestamps per
(type, symbol, feature); PSI per type). A critical alert (ADWIN/Page-Hinkley degradation, PSI above
``psi_severe``) is followed by one ``retrain_requested`` alert (its own cool-down). A new model
version resets the layer (new features, new error distribution). ``state_bytes()`` /
``load_state()`` serialize everything as JSON. ``online_learning`` is off by default: `technic
online-eval` found no significant gain (figures in README, "Online learning and drift").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from stream.stages.alerts import AlertGate, make_alert
from stream.io.timestamps import ts_string
from stream.stages.records import ExtensionResult
from technic.features import registry as R
from technic.models.preprocess import rank_gauss

from stream.online.drift import (AdwinDetector, DeadLetterRate, PageHinkleyDetector, PSIMonitor, RollingIC, feature_lookbacks,
                    psi_summary, spearman, warmed_up)
from stream.online.labels import DelayedLabelBuffer
from stream.online.learners import OnlineLearner

#: PSI of one ``psi_window`` vs the training deciles (see module docstring and the calibration test)
PSI_WARNING, PSI_CRITICAL = 2.0, 5.0
#: alert types held back during the detector warm-up (the dead-letter rate is not: bad input is bad at once)
DRIFT_TYPES = ("psi", "drift_adwin", "drift_page_hinkley", "ic_decay", "retrain_requested")



@dataclass
class OnlineConfig:
    enabled: bool = True
    horizons: tuple = (5, 10)
    lag: int = 1                         # execution lag of the realized labels (technic.labels)
    monitor_horizon: int | None = None   # detectors watch this horizon (default: the first)
    # the online learners + score_online: off by default, `technic online-eval` on the dev data found no
    # significant gain (see the module docstring); the drift monitoring runs either way
    online_learning: bool = False
    lr: float = 0.005
    l2: float = 1e-3
    warmup: int = 2000                   # labelled rows before the online score leaves the batch score
    detector_warmup: int = 60            # scored timestamps after a (re)start before any drift alert
    psi_threshold: float = PSI_WARNING
    psi_severe: float = PSI_CRITICAL
    psi_window: int = 20
    psi_min_share: float = 0.5           # a feature's window PSI needs warmed-up finite values for this share
    psi_top: int = 5                     # features named in a PSI alert
    ic_threshold: float = 0.0
    ic_window: int = 20
    adwin_delta: float = 1e-4
    ph_delta: float = 0.1
    ph_threshold: float = 20.0
    # a detected degradation is critical (-> retrain_requested) only while the model ranks the wrong
    # way: rolling ic_window-timestamp RankIC <= ic_critical; else a warning. Calibrated on the shipped
    # data: the quick model's worst 20-timestamp RankIC inside its own training periods was -0.12
    ic_critical: float = -0.15
    deadletter_threshold: float = 0.05
    deadletter_window: int = 20
    cooldown: int = 20

    def to_dict(self) -> dict:
        d = asdict(self)
        d["horizons"] = list(self.horizons)
        return d


def _zscore(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    out = np.full(x.shape, np.nan)
    if ok.sum() >= 2:
        v = x[ok]
        sd = v.std()
        out[ok] = (v - v.mean()) / sd if sd > 0 else 0.0
    return out


def _gauss_by_group(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = np.full(len(y), np.nan)
    for g in np.unique(groups):
        m = groups == g
        out[m] = rank_gauss(y[m][:, None])[:, 0]
    return out


class OnlineLayer:
    """Pipeline extension; see module docstring."""

    def __init__(self, config: OnlineConfig | None = None, reference: dict | None = None,
                 reference_loader: Callable[[str], dict | None] | None = None):
        self.cfg = config or OnlineConfig()
        self._reference = reference
        self._loader = reference_loader
        self._stats = None
        self._engine = None
        self.gate = AlertGate(self.cfg.cooldown)
        self.version: str | None = None
        self.step = 0
        self.started = 0
        self.counts: dict[str, int] = {}

    def bind(self, pipeline) -> "OnlineLayer":
        """Read the dead-letter rate from ``pipeline.stats`` and each symbol's bar count from its
        feature engine (PSI warm-up); optional."""
        self._stats = pipeline.stats
        self._engine = getattr(pipeline, "engine", None)
        return self

    # -- (re)initialisation -----------------------------------------------------------------
    def _reset(self, scorer) -> None:
        c = self.cfg
        self.version = scorer.version
        self.features = list(scorer.feature_names)
        self.hs = [int(h) for h in c.horizons if int(h) in [int(x) for x in scorer.horizons]]
        self.hm = int(c.monitor_horizon) if c.monitor_horizon in self.hs else (self.hs[0] if self.hs else None)
        m, H = len(self.features), len(self.hs)
        self.buffer = DelayedLabelBuffer(self.hs or (1,), 2 * H + m, c.lag)
        self.learners = {h: OnlineLearner(["score"] + self.features, c.lr, c.l2) for h in self.hs}
        self.adwin_err = AdwinDetector(c.adwin_delta)
        self.adwin_ic = AdwinDetector(c.adwin_delta)
        self.ph = PageHinkleyDetector(delta=c.ph_delta, threshold=c.ph_threshold)
        self.roll_ic = RollingIC(c.ic_window)
        self.dead = DeadLetterRate(c.deadletter_window)
        ref = self._reference
        if ref is None and self._loader is not None:
            ref = self._loader(scorer.version)
        self.psi = PSIMonitor(ref, self.features, c.psi_window, min_share=c.psi_min_share) if ref else None
        self._lookbacks = feature_lookbacks(self.features)
        self.started = self.step  # detector warm-up counts from here

    # -- the hook ----------------------------------------------------------------------------
    def on_scored(self, ts_ns, symbols, features, closes, scores, scorer) -> ExtensionResult | None:
        if not self.cfg.enabled:
            return None
        if scorer.version != self.version:
            self._reset(scorer)
        self.step += 1
        c, ts = self.cfg, ts_string(ts_ns)
        idx = [R.FEATURE_NAMES.index(f) for f in self.features] if not hasattr(self, "_cols") or \
            self._cols[0] != self.version else self._cols[1]
        self._cols = (self.version, idx)
        Xraw = np.asarray(features, dtype=np.float64)[:, idx]
        Z = np.nan_to_num(rank_gauss(Xraw), nan=0.0) if len(symbols) else np.zeros((0, len(idx)))
        sz = {h: _zscore(np.asarray(scores[h], dtype=np.float64)) for h in self.hs}
        online = {}
        for h in self.hs:
            L = self.learners[h]
            online[h] = L.predict_many(np.column_stack([np.nan_to_num(sz[h]), Z])) \
                if c.online_learning and L.n_learned >= c.warmup else sz[h].copy()
        payload = np.column_stack([sz[h] for h in self.hs] + [online[h] for h in self.hs] + [Z])
        matured = self.buffer.push(ts_ns, symbols, closes, payload) if self.hs else {}
        alerts: list[dict] = []
        H = len(self.hs)
        for j, h in enumerate(self.hs):
            mt = matured.get(h)
            if mt is None:
                continue
            y = _gauss_by_group(mt.excess, mt.origin_ts)
            P = mt.payload
            if c.online_learning:
                self.learners[h].learn_many(np.column_stack([np.nan_to_num(P[:, j]), P[:, 2 * H:]]), y)
            if h == self.hm:
                alerts += self._monitor(mt, P[:, j], y, ts, scorer.version)
        if self.psi is not None:
            X = warmed_up(self._engine, symbols, Xraw, self._lookbacks)
            alerts += self._psi_alert(self.psi.update(X), ts, scorer.version)
        if self._stats is not None:
            dead = sum(self._stats.deadletter.values())
            rate, n = self.dead.update(self._stats.bars_in, dead)
            if n > 0 and rate > c.deadletter_threshold:
                alerts += self._alert("deadletter_rate", "warning", "deadletter_rate", rate, c.deadletter_threshold,
                                      c.deadletter_window, ts, scorer.version,
                                      f"{rate:.1%} of {n} bars dead-lettered over {c.deadletter_window} timestamps")
        if any(a["severity"] == "critical" for a in alerts):
            why = ", ".join(sorted({a["type"] for a in alerts if a["severity"] == "critical"}))
            alerts += self._alert("retrain_requested", "critical", "drift", None, None, None, ts, scorer.version,
                                  f"severe drift ({why}): retrain requested")
        return ExtensionResult(online_scores=online if c.online_learning and online else None, alerts=alerts)

    def _psi_alert(self, res: dict | None, ts: str, version: str) -> list[dict]:
        """One alert per PSI window: the features above the threshold, worst first."""
        c = self.cfg
        found = psi_summary(res, c.psi_threshold, c.psi_severe, c.psi_top)
        if found is None:
            return []
        sev, worst, name, message = found
        return self._alert("psi", sev, "psi", worst, c.psi_threshold, c.psi_window, ts, version,
                           f"PSI over the last {c.psi_window} timestamps vs training: {message}", feature=name,
                           gate_key=("psi",))

    @staticmethod
    def _severity(worse: bool, harmful: bool) -> str:
        """critical: worse AND the model now ranks the wrong way; warning: worse; info: better."""
        return "info" if not worse else ("critical" if harmful else "warning")

    def _monitor(self, mt, s, y, ts, version) -> list[dict]:
        c, out = self.cfg, []
        err = (np.nan_to_num(s) - y) ** 2
        for t in np.unique(mt.origin_ts):
            m = mt.origin_ts == t
            ok = m & np.isfinite(y)
            if ok.sum() < 10:
                continue
            e = float(np.mean(err[ok]))   # one value per origin timestamp: its rows are not independent
            ic = spearman(s[m], mt.excess[m])
            roll = self.roll_ic.update(ic) if np.isfinite(ic) else None
            recent = self.roll_ic.mean()
            harmful = recent is not None and recent <= c.ic_critical   # the model now ranks the wrong way
            why = f"rolling {c.ic_window}-timestamp RankIC {'n/a' if recent is None else f'{recent:+.3f}'}"
            hit, before, after = self.adwin_err.update(e)
            if hit:
                out += self._alert("drift_adwin", self._severity(after > before, harmful), "prediction_error",
                                   after, before, int(self.adwin_err.det.width), ts, version,
                                   f"ADWIN: mean squared error of the {self.hm}d score changed "
                                   f"{before:.3f} -> {after:.3f}; {why}")
            if self.ph.update(e):
                out += self._alert("drift_page_hinkley", self._severity(True, harmful), "mean_prediction_error",
                                   self.ph.mean, c.ph_threshold, None, ts, version,
                                   f"Page-Hinkley: mean error of the {self.hm}d score increased "
                                   f"(running mean {self.ph.mean:.3f}); {why}")
            if not np.isfinite(ic):
                continue
            hit, before, after = self.adwin_ic.update(ic)
            if hit:
                out += self._alert("drift_adwin", self._severity(after < before, harmful), "rank_ic", after, before,
                                   int(self.adwin_ic.det.width), ts, version,
                                   f"ADWIN: daily RankIC ({self.hm}d) changed {before:+.4f} -> {after:+.4f}; {why}",
                                   feature="rank_ic")
            if roll is not None and roll < c.ic_threshold:
                out += self._alert("ic_decay", "warning", "rank_ic_rolling_mean", roll, c.ic_threshold, c.ic_window,
                                   ts, version, f"rolling {c.ic_window}-timestamp RankIC ({self.hm}d) {roll:+.4f} "
                                                f"below {c.ic_threshold:+.4f}")
        return out

    def _alert(self, type_, severity, metric, value, threshold, window, ts, version, message, symbol=None,
               feature=None, gate_key=None) -> list[dict]:
        if type_ in DRIFT_TYPES and self.step - self.started <= self.cfg.detector_warmup:
            return []  # warm-up: the detectors learn their baseline, nothing is raised
        if not self.gate.allow(gate_key or (type_, symbol, feature), self.step):
            return []
        self.counts[type_] = self.counts.get(type_, 0) + 1
        return [make_alert(type_, severity, metric, value, threshold, window, version, ts, message,
                           symbol=symbol, feature=feature)]

    # -- state --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"config": self.cfg.to_dict(), "version": self.version, "step": self.step, "counts": self.counts,
             "started": getattr(self, "started", 0),
             "gate": {"last": [[list(k), v] for k, v in self.gate._last.items()],
                      "suppressed": self.gate.suppressed}}
        if self.version is not None:
            d.update(features=self.features, hs=self.hs, hm=self.hm, buffer=self.buffer.to_dict(),
                     learners={str(h): L.to_dict() for h, L in self.learners.items()},
                     adwin_err=self.adwin_err.to_dict(), adwin_ic=self.adwin_ic.to_dict(), ph=self.ph.to_dict(),
                     roll_ic=self.roll_ic.to_dict(), dead=self.dead.to_dict(),
                     psi=None if self.psi is None else self.psi.to_dict())
        return d

    def state_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    def load_state(self, raw: bytes | str | dict) -> "OnlineLayer":
        d = raw if isinstance(raw, dict) else json.loads(raw)
        self.version, self.step = d["version"], int(d["step"])
        self.started = int(d.get("started", 0))
        self.counts = dict(d["counts"])
        self.gate._last = {tuple(k): v for k, v in d["gate"]["last"]}
        self.gate.suppressed = d["gate"]["suppressed"]
        if self.version is None:
            return self
        self.features, self.hs, self.hm = list(d["features"]), [int(h) for h in d["hs"]], d["hm"]
        self.buffer = DelayedLabelBuffer.from_dict(d["buffer"])
        self.learners = {int(h): OnlineLearner.from_dict(v) for h, v in d["learners"].items()}
        self.adwin_err = AdwinDetector.from_dict(d["adwin_err"])
        self.adwin_ic = AdwinDetector.from_dict(d["adwin_ic"])
        self.ph = PageHinkleyDetector.from_dict(d["ph"])
        self.roll_ic = RollingIC.from_dict(d["roll_ic"])
        self.dead = DeadLetterRate.from_dict(d["dead"])
        self.psi = None if d["psi"] is None else PSIMonitor.from_dict(d["psi"])
        self._lookbacks = feature_lookbacks(self.features)
        return self


def registry_reference_loader(registry_root=None) -> Callable[[str], dict | None]:
    """``version -> reference_distributions`` read from that version's registry manifest."""
    def load(version: str) -> dict | None:
        from technic.registry import Registry
        try:
            return Registry(registry_root).show(version).get("reference_distributions")
        except Exception:  # a stand-in scorer without a registry version: no PSI
            return None
    return load
