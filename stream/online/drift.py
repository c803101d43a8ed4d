"""Drift detectors with JSON state: River's ADWIN / Page-Hinkley, PSI, rolling RankIC, dead-letter rate.

- ``AdwinDetector`` wraps ``river.drift.ADWIN`` (the layer feeds it the per-row prediction error and,
  separately, the daily RankIC series). Its state is River's own: the Rust helper's
  ``__getstate__`` bytes (base64 in JSON) + the drift flag, restored with ``__setstate__``.
- ``PageHinkleyDetector`` wraps ``river.drift.PageHinkley`` (mode "up" on the mean error per
  timestamp); its state is its running mean and cumulative sums.
- ``PSIMonitor``: per feature, counts in the bins given by the training deciles stored in the registry
  manifest (``reference_distributions``: ``{"quantiles", "values", "missing_rate"}``) over tumbling
  windows of ``window`` timestamps; at the end of each window
  ``PSI = sum_b (a_b - e_b) * ln(a_b / e_b)`` with both shares floored at ``eps``. Bin b of a value x is
  the number of unique inner decile edges strictly below x (x <= edge goes left), so the expected share
  of a bin is the decile mass between its edges (tied deciles merge bins and a tied value, a point
  mass, is given the midpoint between its decile level and the next); NaN has its own bin with the
  training missing rate only with ``include_missing=True``. The default compares the finite values
  alone (shares renormalized): the training missing rate is dominated by the features' warm-up
  (a 252-bar lookback leaves a third of a 3-year training set NaN), which a warmed-up stream never
  shows, so including it would raise a permanent false alarm.
- PSI helpers for the layer: ``warmed_up`` (NaN for values still in their lookback warm-up),
  ``psi_summary`` (one alert's worth of a window: the features above the threshold, worst first).
- ``RollingIC``: rolling mean of the last ``window`` daily RankICs (``ic_decay`` below a threshold).
- ``DeadLetterRate``: dead letters / bars received over the last ``window`` timestamps.
"""

from __future__ import annotations

import base64
import math
from collections import deque

import numpy as np
from river import drift


class AdwinDetector:
    """``river.drift.ADWIN`` + JSON state; ``update`` returns (drift, mean before, mean after)."""

    def __init__(self, delta: float = 0.002, clock: int = 32, max_buckets: int = 5, min_window_length: int = 5,
                 grace_period: int = 10):
        self.params = dict(delta=float(delta), clock=int(clock), max_buckets=int(max_buckets),
                           min_window_length=int(min_window_length), grace_period=int(grace_period))
        self.det = drift.ADWIN(**self.params)
        self.n_detections = 0

    def update(self, x: float) -> tuple[bool, float, float]:
        before = self.det.estimation
        self.det.update(float(x))
        hit = bool(self.det.drift_detected)
        self.n_detections += hit
        return hit, before, self.det.estimation

    def to_dict(self) -> dict:
        return {"params": self.params, "n_detections": self.n_detections,
                "drift_detected": bool(self.det.drift_detected),
                "helper": base64.b64encode(self.det._helper.__getstate__()).decode()}

    @classmethod
    def from_dict(cls, d: dict) -> "AdwinDetector":
        a = cls(**d["params"])
        a.n_detections = int(d["n_detections"])
        a.det._helper.__setstate__(base64.b64decode(d["helper"]))
        a.det._drift_detected = bool(d["drift_detected"])
        return a


class PageHinkleyDetector:
    """``river.drift.PageHinkley`` + JSON state."""

    _FIELDS = ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease")

    def __init__(self, min_instances: int = 30, delta: float = 0.05, threshold: float = 10.0,
                 alpha: float = 1 - 1e-4, mode: str = "up"):
        self.params = dict(min_instances=int(min_instances), delta=float(delta), threshold=float(threshold),
                           alpha=float(alpha), mode=mode)
        self.det = drift.PageHinkley(**self.params)
        self.n_detections = 0

    def update(self, x: float) -> bool:
        self.det.update(float(x))
        hit = bool(self.det.drift_detected)
        self.n_detections += hit
        return hit

    @property
    def mean(self) -> float:
        return float(self.det._x_mean.get())

    def to_dict(self) -> dict:
        d = self.det
        return {"params": self.params, "n_detections": self.n_detections, "drift_detected": bool(d.drift_detected),
                "n": float(d._x_mean.n), "mean": float(d._x_mean._mean),
                **{k: float(getattr(d, k)) for k in self._FIELDS}}

    @classmethod
    def from_dict(cls, s: dict) -> "PageHinkleyDetector":
        p = cls(**s["params"])
        p.n_detections = int(s["n_detections"])
        d = p.det
        d._x_mean.n, d._x_mean._mean = float(s["n"]), float(s["mean"])
        for k in cls._FIELDS:
            setattr(d, k, float(s[k]))  # inf survives json (Infinity) and float()
        d._drift_detected = bool(s["drift_detected"])
        return p


def reference_bins(ref: dict) -> tuple[np.ndarray, np.ndarray]:
    """(inner edges, expected shares incl. a last NaN bin) from one feature's manifest entry."""
    q = np.asarray(ref["quantiles"], dtype=np.float64)
    vals = ref["values"]
    miss = float(ref.get("missing_rate", 0.0))
    if vals is None or any(v is None for v in vals):
        return np.zeros(0), np.array([0.0, 1.0])  # no finite training values: everything expected missing
    v = np.asarray(vals, dtype=np.float64)
    edges = np.unique(v[1:-1])
    # cdf at each unique edge: the highest quantile level q_k whose value equals it; a tied edge
    # (a point mass) holds somewhere between q_k and q_{k+1}: take the midpoint
    cdf = []
    for e in edges:
        k = int(np.flatnonzero(v[:-1] == e).max())
        cdf.append(q[k] if (v == e).sum() == 1 else 0.5 * (q[k] + q[k + 1]))
    cdf = np.asarray(cdf)
    shares = np.diff(np.r_[0.0, cdf, 1.0]) * (1.0 - miss)
    return edges, np.r_[shares, miss]


def psi(actual_counts, expected_shares, eps: float = 1e-4) -> float:
    """Population stability index of bin counts against expected shares (both floored at eps)."""
    a = np.asarray(actual_counts, dtype=np.float64)
    n = a.sum()
    if n <= 0:
        return float("nan")
    a = np.maximum(a / n, eps)
    e = np.maximum(np.asarray(expected_shares, dtype=np.float64), eps)
    return float(np.sum((a - e) * np.log(a / e)))


class PSIMonitor:
    """Per-feature PSI over tumbling windows of ``window`` timestamps (see module docstring)."""

    def __init__(self, reference: dict, feature_names, window: int = 20, eps: float = 1e-4,
                 include_missing: bool = False, min_share: float = 0.0):
        self.feature_names = [f for f in feature_names if f in reference]
        self.window, self.eps, self.include_missing = int(window), float(eps), bool(include_missing)
        self.min_share = float(min_share)
        self.reference = {f: reference[f] for f in self.feature_names}
        self._bins = [reference_bins(self.reference[f]) for f in self.feature_names]
        self.counts = [np.zeros(len(e) + 2) for e, _ in self._bins]
        self.n_ts = 0

    def update(self, X) -> dict[str, float] | None:
        """Add one timestamp (k, len(feature_names)); at the end of a window return {feature: PSI}.

        NaN values count in the missing bin (compared only with ``include_missing``). A feature
        whose finite values are fewer than ``min_share`` of the window's rows gets no PSI: a few
        symbols repeated over the window are no sample of its distribution.
        """
        X = np.asarray(X, dtype=np.float64)
        for j, (edges, _) in enumerate(self._bins):
            x = X[:, j]
            ok = np.isfinite(x)
            b = np.searchsorted(edges, x[ok], side="left")
            self.counts[j] += np.bincount(b, minlength=len(edges) + 2)
            self.counts[j][-1] += (~ok).sum()
        self.n_ts += 1
        if self.n_ts < self.window:
            return None
        out = {}
        for f, c, (_, e) in zip(self.feature_names, self.counts, self._bins):
            if c[:-1].sum() < self.min_share * c.sum() or c.sum() == 0:
                continue
            if not self.include_missing:
                c, e = c[:-1], e[:-1] / e[:-1].sum() if e[:-1].sum() > 0 else e[:-1]
            out[f] = psi(c, e, self.eps)
        for c in self.counts:
            c[:] = 0
        self.n_ts = 0
        return out

    def to_dict(self) -> dict:
        return {"reference": self.reference, "feature_names": self.feature_names, "window": self.window,
                "eps": self.eps, "include_missing": self.include_missing, "min_share": self.min_share,
                "n_ts": self.n_ts, "counts": [c.tolist() for c in self.counts]}

    @classmethod
    def from_dict(cls, d: dict) -> "PSIMonitor":
        m = cls(d["reference"], d["feature_names"], d["window"], d["eps"], d["include_missing"],
                d.get("min_share", 0.0))
        m.n_ts = int(d["n_ts"])
        m.counts = [np.asarray(c, dtype=np.float64) for c in d["counts"]]
        return m


def feature_lookbacks(features) -> np.ndarray:
    """Bars each feature needs before its value is out of warm-up (the feature registry's lookback)."""
    from technic.features import registry as R
    lookback = {d["name"]: int(d["lookback"]) for d in R.describe()}
    return np.array([lookback.get(f, 0) for f in features], dtype=np.int64)


def warmed_up(engine, symbols, X, lookbacks) -> np.ndarray:
    """``X`` with NaN where a symbol has not yet more bars than the feature's lookback (PSI input);
    ``engine`` is the stream's FeatureEngine (per-symbol ``n_bars``), None = no masking."""
    if engine is None or not len(symbols):
        return X
    n = engine.n_bars[np.array([engine.slots[s] for s in symbols], dtype=np.intp)]
    X = np.array(X, dtype=np.float64, copy=True)
    X[n[:, None] <= np.asarray(lookbacks)[None, :]] = np.nan
    return X


def psi_summary(res: dict | None, threshold: float, severe: float, top: int = 5):
    """(severity, worst PSI, its feature, "k of n features above t: f1 v1, ...") or None if none is above."""
    over = sorted(((v, f) for f, v in (res or {}).items() if v > threshold), reverse=True)
    if not over:
        return None
    listed = ", ".join(f"{f} {v:.2f}" for v, f in over[:top]) + (" ..." if len(over) > top else "")
    worst, name = over[0]
    return ("critical" if worst > severe else "warning", worst, name,
            f"{len(over)} of {len(res)} features above {threshold:g}: {listed}")


class RollingIC:
    """Mean of the last ``window`` finite daily RankICs (None until the window is full)."""

    def __init__(self, window: int = 20):
        self.window = int(window)
        self.values: deque = deque(maxlen=self.window)

    def update(self, ic: float) -> float | None:
        if math.isfinite(ic):
            self.values.append(float(ic))
        return self.mean()

    def mean(self) -> float | None:
        """Mean of the window once full, else None."""
        return float(np.mean(self.values)) if len(self.values) == self.window else None

    def to_dict(self) -> dict:
        return {"window": self.window, "values": list(self.values)}

    @classmethod
    def from_dict(cls, d: dict) -> "RollingIC":
        r = cls(d["window"])
        r.values.extend(float(v) for v in d["values"])
        return r


class DeadLetterRate:
    """Dead letters per bar received over the last ``window`` timestamps, from cumulative counters."""

    def __init__(self, window: int = 20):
        self.window = int(window)
        self.marks: deque = deque(maxlen=self.window + 1)

    def update(self, bars_in: int, dead: int) -> tuple[float, int]:
        self.marks.append((int(bars_in), int(dead)))
        b0, d0 = self.marks[0]
        n = max(bars_in - b0, 1)  # a dead-lettered bar was counted in bars_in too
        return (dead - d0) / n, bars_in - b0

    def to_dict(self) -> dict:
        return {"window": self.window, "marks": [list(m) for m in self.marks]}

    @classmethod
    def from_dict(cls, d: dict) -> "DeadLetterRate":
        r = cls(d["window"])
        r.marks.extend(tuple(m) for m in d["marks"])
        return r


def spearman(a, b, min_obs: int = 10) -> float:
    """Spearman rank correlation of the finite pairs (average ranks), NaN below ``min_obs`` pairs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < min_obs:
        return float("nan")
    from technic.models.preprocess import average_ranks
    r = average_ranks(np.column_stack([a[ok], b[ok]]))
    r -= r.mean(axis=0)
    den = math.sqrt(float((r[:, 0] ** 2).sum() * (r[:, 1] ** 2).sum()))
    return float((r[:, 0] * r[:, 1]).sum() / den) if den > 0 else float("nan")
