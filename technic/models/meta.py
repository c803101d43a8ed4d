"""Win-probability meta-model: calibrated P(excess_h > 0) and P(top decile of excess_h).

Inputs: the fold's (cross-sectionally normalized) base features plus the base models'
predictions. On TRAINING rows the base predictions must be out-of-fold
(``technic.models.stacking.oof_predictions``), never in-sample fits, or the classifier
learns to trust an over-fitted signal; on test rows they are the fold models' predictions.

Fitting, all inside one walk-forward training fold (GUIDE section 3):

1. ``inner_time_split`` cuts the fold's dates into a fit part and a later calibration slice,
   with ``gap_days`` (>= label horizon) dates dropped in between;
2. per target a LightGBM binary classifier (fixed, small number of trees; deterministic) is
   fitted on the fit part;
3. its raw probabilities on the calibration slice are calibrated with isotonic regression
   (or Platt scaling) against the slice's outcomes.

Targets: ``pos`` = 1{excess_h > 0} (excess = return minus the date's universe median, so
the base rate is ~0.5); ``top10`` = 1{excess_h in the date's top decile} (base rate ~0.1).

Serialization: LightGBM text per target + calibrators as JSON arrays (no pickle).
"""

from __future__ import annotations

import json

import numpy as np

from technic.validation import inner_time_split

TARGETS = ("pos", "top10")

META_LGBM = dict(objective="binary", learning_rate=0.05, num_leaves=15, max_depth=4, min_data_in_leaf=300,
                 feature_fraction=0.7, bagging_fraction=0.7, bagging_freq=1, lambda_l2=10.0, max_bin=63,
                 verbosity=-1)


def make_targets(excess: np.ndarray, dates: np.ndarray) -> dict[str, np.ndarray]:
    """Binary targets (float, NaN where the label is missing) from per-row excess returns."""
    import pandas as pd
    e = pd.Series(np.asarray(excess, dtype=np.float64))
    pos = np.where(e.notna(), (e > 0).astype(float), np.nan)
    pct = e.groupby(np.asarray(dates)).rank(pct=True, method="average").to_numpy()
    top = np.where(e.notna(), (pct > 0.9).astype(float), np.nan)
    return {"pos": pos, "top10": top}


def brier(p, y) -> float:
    """Mean squared error of probabilities ``p`` against 0/1 outcomes ``y`` (finite pairs only)."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    ok = np.isfinite(p) & np.isfinite(y)
    return float(np.mean((p[ok] - y[ok]) ** 2)) if ok.any() else float("nan")


def reliability_curve(p, y, n_bins: int = 10) -> dict:
    """Equal-width bins on [0, 1]: mean predicted probability, observed frequency, count per bin."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    ok = np.isfinite(p) & np.isfinite(y)
    p, y = p[ok], y[ok]
    b = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    cnt = np.bincount(b, minlength=n_bins)
    sp = np.bincount(b, weights=p, minlength=n_bins)
    sy = np.bincount(b, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"bin_lo": (np.arange(n_bins) / n_bins).tolist(), "mean_pred": (sp / cnt).tolist(),
                "observed": (sy / cnt).tolist(), "count": cnt.tolist()}


class Calibrator:
    """Isotonic (piecewise-linear through fitted thresholds, clipped) or Platt (logistic) map."""

    def __init__(self, method: str = "isotonic"):
        if method not in ("isotonic", "platt"):
            raise ValueError(f"calibration method must be 'isotonic' or 'platt', got {method!r}")
        self.method = method

    def fit(self, raw, y):
        raw, y = np.asarray(raw, float), np.asarray(y, float)
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            self.x_ = np.asarray(iso.X_thresholds_, float)
            self.y_ = np.asarray(iso.y_thresholds_, float)
        else:
            from sklearn.linear_model import LogisticRegression
            lr = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], y.astype(int))
            self.a_, self.b_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def predict(self, raw) -> np.ndarray:
        raw = np.asarray(raw, float)
        if self.method == "isotonic":
            return np.interp(raw, self.x_, self.y_)
        return 1.0 / (1.0 + np.exp(-(self.a_ * _logit(raw) + self.b_)))

    def to_dict(self) -> dict:
        if self.method == "isotonic":
            return {"method": "isotonic", "x": self.x_.tolist(), "y": self.y_.tolist()}
        return {"method": "platt", "a": self.a_, "b": self.b_}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibrator":
        c = cls(d["method"])
        if c.method == "isotonic":
            c.x_, c.y_ = np.asarray(d["x"], float), np.asarray(d["y"], float)
        else:
            c.a_, c.b_ = float(d["a"]), float(d["b"])
        return c


def _logit(p):
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class WinProbModel:
    """Calibrated classifiers for ``TARGETS`` (see module docstring)."""

    def __init__(self, n_estimators: int = 80, valid_frac: float = 0.25, gap_days: int = 5,
                 calibration: str = "isotonic", seed: int = 0, n_threads: int = 2, params: dict | None = None):
        self.n_estimators = n_estimators
        self.valid_frac = valid_frac
        self.gap_days = gap_days
        self.calibration = calibration
        self.seed = seed
        self.n_threads = n_threads
        self.params = params

    def _params(self) -> dict:
        return {**META_LGBM, **(self.params or {}), "seed": self.seed, "num_threads": self.n_threads,
                "deterministic": True, "force_col_wise": True}

    def fit(self, X, excess, dates):
        import lightgbm as lgb
        X = np.asarray(X, dtype=np.float64)
        dates = np.asarray(dates)
        ys = make_targets(excess, dates)
        fit_idx, cal_idx = inner_time_split(dates, self.valid_frac, self.gap_days)
        self.boosters_, self.calibrators_, self.base_rates_ = {}, {}, {}
        for t in TARGETS:
            y = ys[t]
            f = fit_idx[np.isfinite(y[fit_idx])]
            c = cal_idx[np.isfinite(y[cal_idx])]
            b = lgb.train(self._params(), lgb.Dataset(X[f], y[f], params={"max_bin": 63}),
                          num_boost_round=self.n_estimators)
            self.boosters_[t] = b
            self.calibrators_[t] = Calibrator(self.calibration).fit(b.predict(X[c], num_threads=self.n_threads),
                                                                     y[c])
            self.base_rates_[t] = float(np.nanmean(y[np.r_[f, c]]))
        self.n_features_in_ = X.shape[1]
        return self

    def raw_proba(self, X) -> dict[str, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        return {t: b.predict(X, num_threads=self.n_threads) for t, b in self.boosters_.items()}

    def predict_proba(self, X) -> dict[str, np.ndarray]:
        """Calibrated probabilities per target, each (n,)."""
        return {t: self.calibrators_[t].predict(r) for t, r in self.raw_proba(X).items()}

    def to_files(self, prefix: str = "meta") -> dict[str, bytes]:
        files = {f"{prefix}_{t}.txt": b.model_to_string().encode() for t, b in self.boosters_.items()}
        files[f"{prefix}_calibration.json"] = json.dumps(
            {"targets": list(self.boosters_), "calibrators": {t: c.to_dict() for t, c in self.calibrators_.items()},
             "base_rates": self.base_rates_, "n_features": self.n_features_in_}).encode()
        return files

    @classmethod
    def from_files(cls, read, prefix: str = "meta", n_threads: int = 2) -> "WinProbModel":
        """``read(name) -> bytes`` (e.g. ``LoadedVersion.read_bytes``, checksum-verified)."""
        import lightgbm as lgb
        cal = json.loads(read(f"{prefix}_calibration.json"))
        m = cls(n_threads=n_threads)
        m.boosters_ = {t: lgb.Booster(model_str=read(f"{prefix}_{t}.txt").decode()) for t in cal["targets"]}
        m.calibrators_ = {t: Calibrator.from_dict(d) for t, d in cal["calibrators"].items()}
        m.base_rates_ = cal["base_rates"]
        m.n_features_in_ = cal["n_features"]
        return m


def evaluate(probs: dict[str, np.ndarray], excess, dates, base_rates: dict[str, np.ndarray] | None = None) -> dict:
    """Out-of-sample Brier per target vs the base-rate forecast, plus the reliability curve.

    ``base_rates``: per-row naive forecast (e.g. each fold's TRAINING base rate); when None,
    the test-period climatology is used (slightly flattering to the baseline).
    """
    ys = make_targets(excess, dates)
    out = {}
    for t, p in probs.items():
        y = ys[t]
        ok = np.isfinite(p) & np.isfinite(y)
        clim = float(np.mean(y[ok])) if ok.any() else float("nan")
        naive = base_rates[t] if base_rates is not None else np.full(len(y), clim)
        bs, bb = brier(p[ok], y[ok]), brier(np.asarray(naive)[ok], y[ok])
        out[t] = {"brier": bs, "brier_base_rate": bb, "brier_climatology": brier(np.full(ok.sum(), clim), y[ok]),
                  "brier_skill": (1 - bs / bb) if bb and np.isfinite(bb) else None, "n": int(ok.sum()),
                  "observed_rate": clim, "mean_pred": float(np.mean(p[ok])) if ok.any() else None,
                  "reliability": reliability_curve(p[ok], y[ok])}
    return out


def plot_reliability(win_prob: dict, path) -> None:
    """Reliability diagram (one panel per horizon x target) of ``evaluate`` results, as a PNG."""
    import matplotlib.pyplot as plt
    fig = reliability_figure(win_prob)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def reliability_figure(win_prob: dict):
    """The reliability diagram as a matplotlib figure (the tear sheet embeds it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cells = [(h, t, e) for h, d in win_prob.items() for t, e in d.items()]
    fig, axes = plt.subplots(1, len(cells), figsize=(4 * len(cells), 4), squeeze=False)
    for ax, (h, t, e) in zip(axes[0], cells):
        r = e["reliability"]
        ok = [c > 0 for c in r["count"]]
        mp = [m for m, k in zip(r["mean_pred"], ok) if k]
        ob = [o for o, k in zip(r["observed"], ok) if k]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.plot(mp, ob, marker="o")
        ax.set_title(f"h={h} {t}: Brier {e['brier']:.4f} (base {e['brier_base_rate']:.4f})", fontsize=9)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
    fig.tight_layout()
    return fig
