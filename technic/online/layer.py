"""``OnlineLayer``: the ScoringPipeline extension (delayed labels + River learners + drift alerts).

Called once per scored timestamp with all its symbols (``on_scored``), it

1. z-scores each horizon's batch score across the symbols and rank-gausses the model's features (the
   same transform the batch model reads), predicts the online score per horizon (the batch z-score
   until ``warmup`` labelled rows were learned), and stores (scores, online scores, inputs) in the
   ``DelayedLabelBuffer``;
2. for labels that matured at this timestamp: ``learn_one`` per row (target = cross-sectional gauss
   rank of the realized excess return) and, on the monitored horizon, the drift detectors: per-row
   squared error of the z-scored score vs that target (ADWIN), its mean per origin timestamp
   (Page-Hinkley, "up"), the daily RankIC (ADWIN + rolling-``ic_window`` mean below ``ic_threshold``);
3. PSI of every model feature over tumbling ``psi_window``-timestamp windows vs the training deciles
   of the model's registry manifest; the dead-letter rate from the bound pipeline's stats.

Alerts go through ``stream.alerts.make_alert`` and an ``AlertGate`` (``cooldown`` timestamps per
(type, symbol, feature)). A critical alert (ADWIN/Page-Hinkley degradation, PSI above
``psi_severe``) is followed by one ``retrain_requested`` alert (its own cool-down). A new model
version resets the layer (new features, new error distribution). ``state_bytes()`` /
``load_state()`` serialize everything as JSON.

Measured (``technic online-eval``, dev data, 100 symbols, trained before 2016-01-01, 529 scored
timestamps): daily RankIC static -0.0145 (5d) / -0.0043 (10d), online -0.0026 / +0.0015; the gain
+0.012 / +0.006 has Newey-West t 0.72 / 0.27, i.e. not significant. ``online_learning`` therefore
defaults to False (monitoring only); switch it on per deployment.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from stream.alerts import AlertGate, make_alert
from stream.pipeline import ExtensionResult, ts_string
from technic.features import registry as R
from technic.models.preprocess import rank_gauss

from .drift import AdwinDetector, DeadLetterRate, PageHinkleyDetector, PSIMonitor, RollingIC, spearman
from .labels import DelayedLabelBuffer
from .learners import OnlineLearner


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
    psi_threshold: float = 0.25
    psi_severe: float = 1.0
    psi_window: int = 20
    ic_threshold: float = 0.0
    ic_window: int = 20
    adwin_delta: float = 0.002
    ph_delta: float = 0.05
    ph_threshold: float = 10.0
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
        self.gate = AlertGate(self.cfg.cooldown)
        self.version: str | None = None
        self.step = 0
        self.counts: dict[str, int] = {}

    def bind(self, pipeline) -> "OnlineLayer":
        """Read the dead-letter rate from ``pipeline.stats`` (optional)."""
        self._stats = pipeline.stats
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
        self.psi = PSIMonitor(ref, self.features, c.psi_window) if ref else None

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
            res = self.psi.update(Xraw)
            for f, v in (res or {}).items():
                if v > c.psi_threshold:
                    sev = "critical" if v > c.psi_severe else "warning"
                    alerts += self._alert("psi", sev, "psi", v, c.psi_threshold, c.psi_window, ts, scorer.version,
                                          f"{f}: PSI {v:.3f} over the last {c.psi_window} timestamps vs training",
                                          feature=f)
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

    def _monitor(self, mt, s, y, ts, version) -> list[dict]:
        c, out = self.cfg, []
        err = (np.nan_to_num(s) - y) ** 2
        err = err[np.isfinite(y)]
        for e in err:
            hit, before, after = self.adwin_err.update(float(e))
            if hit:
                worse = after > before
                out += self._alert("drift_adwin", "critical" if worse else "info", "prediction_error", after, before,
                                   int(self.adwin_err.det.width), ts, version,
                                   f"ADWIN: squared error of the {self.hm}d score changed {before:.3f} -> {after:.3f}")
        for t in np.unique(mt.origin_ts):
            m = mt.origin_ts == t
            ok = m & np.isfinite(y)
            if ok.sum() >= 10 and self.ph.update(float(np.mean(((np.nan_to_num(s) - y) ** 2)[ok]))):
                out += self._alert("drift_page_hinkley", "critical", "mean_prediction_error", self.ph.mean,
                                   c.ph_threshold, None, ts, version,
                                   f"Page-Hinkley: mean error of the {self.hm}d score increased "
                                   f"(running mean {self.ph.mean:.3f})")
            ic = spearman(s[m], mt.excess[m])
            if not np.isfinite(ic):
                continue
            hit, before, after = self.adwin_ic.update(ic)
            if hit:
                worse = after < before
                out += self._alert("drift_adwin", "critical" if worse else "info", "rank_ic", after, before,
                                   int(self.adwin_ic.det.width), ts, version,
                                   f"ADWIN: daily RankIC ({self.hm}d) changed {before:+.4f} -> {after:+.4f}",
                                   feature="rank_ic")
            roll = self.roll_ic.update(ic)
            if roll is not None and roll < c.ic_threshold:
                out += self._alert("ic_decay", "warning", "rank_ic_rolling_mean", roll, c.ic_threshold, c.ic_window,
                                   ts, version, f"rolling {c.ic_window}-timestamp RankIC ({self.hm}d) {roll:+.4f} "
                                                f"below {c.ic_threshold:+.4f}")
        return out

    def _alert(self, type_, severity, metric, value, threshold, window, ts, version, message, symbol=None,
               feature=None) -> list[dict]:
        if not self.gate.allow((type_, symbol, feature), self.step):
            return []
        self.counts[type_] = self.counts.get(type_, 0) + 1
        return [make_alert(type_, severity, metric, value, threshold, window, version, ts, message,
                           symbol=symbol, feature=feature)]

    # -- state --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"config": self.cfg.to_dict(), "version": self.version, "step": self.step, "counts": self.counts,
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
