"""The scoring API the stream worker uses: a verified registry version -> ``Scorer``.

A version's bundle (``scorer.json`` + artifact files) holds one ``models.ensemble.Ensemble`` per
horizon. ``Scorer.predict(X, history, top_k, groups)`` scores ALL symbols of ONE timestamp (one
cross-section) in one vectorized call, through the same ``Ensemble.predict`` the backtest used: the
per-date rank-gauss of the features, the factor scores and the blend's per-date z-scores are all
functions of that cross-section, so scores are a pure, deterministic function of (model version,
the feature values of that timestamp's cross-section, the symbols' sectors): the batch path
(``score_panel``, date by date) and the stream give bitwise identical scores for the same rows.

* ``X`` (k, len(feature_names)): raw feature values in ``feature_names`` order;
* ``groups`` (k,): sector codes (``features.batch.sector_codes``; -1 = unknown), needed by the
  factor library (industry momentum, optional sector neutralization); None = all unknown;
* ``history`` (k, >= seq_len, p): each symbol's last NORMALIZED rows (oldest first, current row
  last, NaN-padded), required when the version has sequence models (``seq_len > 0``).

``predict`` returns per-horizon served scores, the primary horizon's calibrated P(excess > 0) when
the version has a meta-model, and the top-k contributions of the primary horizon's served score
(``Ensemble.contributions``: TreeSHAP / linear terms of the ML features scaled into the score, and
for the blend each factor's share as ``factor:NAME``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from technic.errors import RegistryError
from technic.explain import top_contributions

from .ensemble import Ensemble
from .inputs import TimestampInputs

SPEC_NAME = "scorer.json"
BUNDLE_FORMAT = 2


class Scorer:
    """Vectorized scorer of one registry version (see module docstring)."""

    def __init__(self, version: str, feature_names: list[str], horizons: list[int], ensembles: dict,
                 factor_names=(), factor_sector_neutral: bool = False):
        self.version = version
        self.feature_names = list(feature_names)
        self.horizons = [int(h) for h in horizons]
        self.ensembles = {int(h): e for h, e in ensembles.items()}
        self.factor_names = tuple(factor_names)
        self.factor_sector_neutral = bool(factor_sector_neutral)
        self.seq_len = max([e.seq_len for e in self.ensembles.values()], default=0)
        meta = [h for h in self.horizons if self.ensembles[h].win_prob_ is not None]
        self._meta_h = meta[0] if meta else None
        self.win_prob = self._win_prob if meta else None

    @property
    def served(self) -> dict[int, str]:
        return {h: e.served for h, e in self.ensembles.items()}

    def inputs(self, X, history=None, groups=None) -> TimestampInputs:
        """The models' view of one timestamp (shape checks with the expected shapes in the message)."""
        X = np.asarray(X, dtype=np.float64)
        p = len(self.feature_names)
        if X.ndim != 2 or X.shape[1] != p:
            raise ValueError(f"X must have shape (k, {p}) in feature_names order, got {X.shape}")
        if groups is not None and np.shape(groups) != (len(X),):
            raise ValueError(f"groups must have shape ({len(X)},), got {np.shape(groups)}")
        if self.seq_len:
            if history is None:
                raise ValueError(f"{self.version} has sequence models: pass history of shape "
                                 f"(k, >= {self.seq_len}, {p}) (normalized rows, current row last)")
            history = np.asarray(history)
            if history.ndim != 3 or history.shape[0] != len(X) or history.shape[1] < self.seq_len \
                    or history.shape[2] != p:
                raise ValueError(f"history must have shape ({len(X)}, >= {self.seq_len}, {p}), got {history.shape}")
        return TimestampInputs(X, self.feature_names, groups, history if self.seq_len else None,
                               self.factor_names, self.factor_sector_neutral)

    def normalize(self, X) -> np.ndarray:
        """The per-timestamp cross-sectional transform the models read (one timestamp's rows)."""
        from .preprocess import rank_gauss
        return rank_gauss(np.asarray(X, dtype=np.float64))

    def predict(self, X, history=None, top_k: int = 5, groups=None, defer_contributions: bool = False) -> dict:
        """One timestamp in one pass: {"scores": {h: (k,)}, "win_prob": (k,) or None,
        "contributions": per row top-k (feature, value, contribution) of the primary horizon}.

        ``defer_contributions``: "contributions" is None and "explain" is a function that returns
        them later (same values: it reuses this call's inputs and predictions), so a caller can
        send the scores before paying for TreeSHAP."""
        inp = self.inputs(X, history, groups)
        k = len(inp)
        out = {h: (self.ensembles[h].predict(inp) if k else None) for h in self.horizons}
        scores = {h: (out[h]["served"] if k else np.zeros(0)) for h in self.horizons}
        win = None
        if self._meta_h is not None:
            win = out[self._meta_h]["win_prob"]["pos"] if k else np.zeros(0)
        h0 = self.horizons[0]

        def explain():
            return self._contributions(inp, top_k, h0, out[h0]) if top_k and k else [[] for _ in range(k)]
        if defer_contributions:
            return {"scores": scores, "win_prob": win, "contributions": None, "explain": explain}
        return {"scores": scores, "win_prob": win, "contributions": explain()}

    def score(self, X, history=None, groups=None) -> dict[int, np.ndarray]:
        """Per-horizon served scores (k,) for the k symbols of one timestamp; higher = better."""
        return self.predict(X, history, 0, groups)["scores"]

    def win_probs(self, X, history=None, groups=None) -> dict[int, dict[str, np.ndarray]]:
        """{h: {target: (k,)}} calibrated probabilities of every horizon with a meta-model."""
        inp = self.inputs(X, history, groups)
        return {h: e.predict(inp)["win_prob"] for h, e in self.ensembles.items() if e.win_prob_ is not None}

    def _win_prob(self, X, history=None, groups=None) -> np.ndarray:
        return self.win_probs(X, history, groups)[self._meta_h]["pos"]

    def contributions(self, X, top_k: int = 5, horizon: int | None = None, groups=None, history=None):
        """Per row: top-k (feature, value, contribution) of the served score, by |contribution|."""
        h = self.horizons[0] if horizon is None else int(horizon)
        if h not in self.ensembles:
            raise ValueError(f"horizon {h} not in this model's horizons {self.horizons}")
        inp = self.inputs(X, history, groups)
        return self._contributions(inp, top_k, h, None)

    def _contributions(self, inp, top_k, h, pred):
        C, names, values = self.ensembles[h].contributions(inp, pred=pred)
        return top_contributions(C, values, names, top_k)

    def __repr__(self) -> str:
        kinds = sorted({n for e in self.ensembles.values() for n in e.models_})
        return (f"Scorer({self.version!r}, horizons={self.horizons}, {len(self.feature_names)} features, "
                f"{kinds}, served={self.served})")


def history_from_panel(features: pd.DataFrame, feature_names: list[str], seq_len: int, rows=None) -> np.ndarray:
    """Normalized history windows (len(rows), seq_len, p) for rows of a (date, symbol) feature panel
    sorted by date: the batch twin of the stream's per-symbol ring."""
    from .deep import build_sequences
    from .preprocess import cross_sectional_transform
    Zp = cross_sectional_transform(features[list(feature_names)])
    rows = np.arange(len(features)) if rows is None else np.asarray(rows)
    return build_sequences(Zp.to_numpy(np.float64), features.index.get_level_values(1).to_numpy(), rows, seq_len)


def score_panel(features: pd.DataFrame, scorer: Scorer, groups=None, chunk_dates: int = 64) -> pd.DataFrame:
    """Batch scoring of a (date, symbol) feature panel, one timestamp's cross-section at a time through
    ``Scorer.predict``: columns ``score_{h}`` (and ``win_prob`` with a meta-model). ``groups``: per-row
    sector codes aligned with the panel (None = all unknown)."""
    from .deep import build_sequences
    from .preprocess import cross_sectional_transform, date_bounds
    order = np.argsort(features.index.get_level_values(0).to_numpy(), kind="stable") \
        if not features.index.is_monotonic_increasing else None
    F = features.iloc[order] if order is not None else features
    G = None if groups is None else np.asarray(groups)[order] if order is not None else np.asarray(groups)
    F = F[list(scorer.feature_names)]
    X = F.to_numpy(np.float64)
    syms = F.index.get_level_values(1).to_numpy()
    bounds = date_bounds(F.index.get_level_values(0).to_numpy())
    Zp = cross_sectional_transform(F).to_numpy(np.float64) if scorer.seq_len else None
    out = {f"score_{h}": np.full(len(F), np.nan) for h in scorer.horizons}
    if scorer.win_prob is not None:
        out["win_prob"] = np.full(len(F), np.nan)
    for c in range(0, len(bounds), chunk_dates):
        block = bounds[c:c + chunk_dates]
        S = (build_sequences(Zp[: block[-1][1]], syms[: block[-1][1]], np.arange(block[0][0], block[-1][1]),
                             scorer.seq_len) if scorer.seq_len else None)
        for a, z in block:
            H = S[a - block[0][0]: z - block[0][0]] if S is not None else None
            r = scorer.predict(X[a:z], history=H, top_k=0, groups=None if G is None else G[a:z])
            for h in scorer.horizons:
                out[f"score_{h}"][a:z] = r["scores"][h]
            if r["win_prob"] is not None:
                out["win_prob"][a:z] = r["win_prob"]
    return pd.DataFrame(out, index=F.index)


def scorer_from_version(loaded, n_threads: int = 2) -> Scorer:
    """Build a Scorer from a verified ``LoadedVersion`` (checksums re-checked on every read)."""
    try:
        spec = json.loads(loaded.read_bytes(SPEC_NAME))
    except RegistryError:
        raise
    except Exception as e:  # pragma: no cover - corrupt spec
        raise RegistryError(f"{loaded.version}: unreadable {SPEC_NAME}: {e}") from e
    if spec.get("format") != BUNDLE_FORMAT:
        raise RegistryError(f"{loaded.version}: bundle format {spec.get('format', 1)} is not served by this release "
                            f"(expected {BUNDLE_FORMAT}); retrain it with technic train --register")
    try:
        ens = {int(h): Ensemble.from_files(e, loaded.read_bytes, n_threads=n_threads)
               for h, e in spec["ensembles"].items()}
    except ImportError as err:
        raise RegistryError(f"{loaded.version} has a deep model: install torch (pip install 'technic[deep]')") from err
    except (KeyError, ValueError) as err:
        raise RegistryError(f"{loaded.version}: inconsistent {SPEC_NAME}: {err}") from err
    fac = spec.get("factors") or {}
    return Scorer(loaded.version, spec["feature_names"], spec["horizons"], ens, fac.get("names", ()),
                  fac.get("sector_neutral", False))


def load_scorer(registry_root: str | Path | None = None, version: str | None = None) -> Scorer:
    """The Scorer of ``version`` (default: the promoted one); RegistryError if none is promoted."""
    from technic.registry import Registry
    return scorer_from_version(Registry(registry_root).load(version))
