"""The scoring API the stream worker uses: a verified registry version -> ``Scorer``.

``Scorer.score(X)`` expects ALL symbols of ONE timestamp (one cross-section): the models
were trained on per-date cross-sectional rank-gauss features, and that transform is done
inside ``score`` on the rows of ``X``. Scores are therefore a pure, deterministic function of
(model version, the feature values of that timestamp's cross-section): the batch path (date by
date) and the stream (one timestamp at a time) give bitwise identical scores for the same
rows, whatever their order. Scoring a single row alone is allowed but meaningless (a lone
row ranks at the centre of every feature).

Per horizon, the score is the mean of the version's models (LightGBM and/or XGBoost), each
reading its own subset (``columns``) of ``feature_names``; when the version has a stack
(``spec["stack"][h]``), it is the Ridge combination ``P @ coef + intercept`` of the base
predictions instead. ``contributions`` are the models' native TreeSHAP values (averaged, or
weighted by the stack coefficients), reported against the raw feature values.

``win_prob(X)`` (only when the version has a meta-model, else the attribute is ``None``):
calibrated P(excess_h > 0) per row for the primary (first) horizon with a meta-model;
``win_probs(X)`` gives every target ({"pos", "top10"}) per horizon.

Sequence models: ``seq_len`` is 0 for tree-only versions; ``score(X, history=None)`` accepts
``history`` of shape (k, seq_len, len(feature_names)) (oldest first, current row last,
NaN-padded at the start) and ignores it when ``seq_len == 0``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from technic.errors import RegistryError
from technic.explain import top_contributions
from technic.models.gbm import load_model
from technic.models.preprocess import rank_gauss

SPEC_NAME = "scorer.json"


class Scorer:
    """Vectorized scorer of one registry version (see module docstring)."""

    win_prob = None  # optional callable (issue 5: meta-model win probability)

    seq_len = 0

    def __init__(self, version: str, feature_names: list[str], horizons: list[int], models: dict,
                 preprocess: str = "gauss", stack: dict | None = None, meta: dict | None = None):
        self.version = version
        self.feature_names = list(feature_names)
        self.horizons = [int(h) for h in horizons]
        self._models = models  # {h: [(name, model, np.ndarray columns)]}
        self.preprocess = preprocess
        self._stack = stack or {}  # {h: (coef (m,), intercept)} in self._models[h] order
        self._meta = meta or {}    # {h: (WinProbModel, np.ndarray columns)}
        self.seq_len = 0
        self.win_prob = self._win_prob if self._meta else None

    def _weights(self, h: int) -> np.ndarray:
        n = len(self._models[h])
        return self._stack[h][0] if h in self._stack else np.full(n, 1.0 / n)

    def _base_preds(self, Z: np.ndarray, h: int) -> np.ndarray:
        return np.column_stack([m.predict(Z[:, cols]) for _, m, cols in self._models[h]])

    def _combine(self, P: np.ndarray, h: int) -> np.ndarray:
        if h in self._stack:
            coef, b = self._stack[h]
            return P @ coef + b
        return np.mean(P, axis=1)

    def win_probs(self, X) -> dict[int, dict[str, np.ndarray]]:
        """{h: {target: (k,)}} calibrated probabilities (see module docstring)."""
        _, Z = self._prepare(X)
        out = {}
        for h, (wp, cols) in self._meta.items():
            if len(Z) == 0:
                out[h] = {t: np.zeros(0) for t in wp.boosters_}
                continue
            out[h] = wp.predict_proba(np.hstack([Z[:, cols], self._base_preds(Z, h)]))
        return out

    def _win_prob(self, X) -> np.ndarray:
        h = min(self._meta, key=self.horizons.index)
        return self.win_probs(X)[h]["pos"]

    def _prepare(self, X) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X must have shape (k, {len(self.feature_names)}) in feature_names order, "
                             f"got {X.shape}")
        return X, rank_gauss(X, self.preprocess)

    def score(self, X, history=None) -> dict[int, np.ndarray]:
        """Per-horizon scores (k,) for the k symbols of one timestamp; higher = better expected excess."""
        _, Z = self._prepare(X)
        out = {}
        for h in self.horizons:
            if len(Z) == 0:
                out[h] = np.zeros(0)
                continue
            out[h] = self._combine(self._base_preds(Z, h), h)
        return out

    def contributions(self, X, top_k: int = 5, horizon: int | None = None) -> list[list[tuple[str, float, float]]]:
        """Per row: top-k (feature, raw feature value, SHAP contribution) by |contribution|."""
        h = self.horizons[0] if horizon is None else int(horizon)
        if h not in self._models:
            raise ValueError(f"horizon {h} not in this model's horizons {self.horizons}")
        X, Z = self._prepare(X)
        C = np.zeros_like(Z)
        for (_, m, cols), w in zip(self._models[h], self._weights(h)):
            C[:, cols] += m.contributions(Z[:, cols])[:, : len(cols)] * w
        return top_contributions(C, X, self.feature_names, top_k)

    def __repr__(self) -> str:
        return f"Scorer({self.version!r}, horizons={self.horizons}, {len(self.feature_names)} features)"


def scorer_from_version(loaded, n_threads: int = 2) -> Scorer:
    """Build a Scorer from a verified ``LoadedVersion`` (checksums re-checked on every read)."""
    try:
        spec = json.loads(loaded.read_bytes(SPEC_NAME))
    except RegistryError:
        raise
    except Exception as e:  # pragma: no cover - corrupt spec
        raise RegistryError(f"{loaded.version}: unreadable {SPEC_NAME}: {e}") from e
    models = {}
    for h, entries in spec["models"].items():
        models[int(h)] = [(e["kind"], load_model(e["kind"], loaded.read_bytes(e["file"]), n_threads),
                           np.asarray(e["columns"], dtype=np.int64)) for e in entries]
    stack = {}
    for h, st in (spec.get("stack") or {}).items():
        if st["models"] != [e["kind"] for e in spec["models"][h]]:
            raise RegistryError(f"{loaded.version}: stack models {st['models']} do not match the h={h} models")
        stack[int(h)] = (np.asarray(st["coef"], dtype=np.float64), float(st["intercept"]))
    meta = {}
    for h, wp in (spec.get("win_prob") or {}).items():
        from technic.models.meta import WinProbModel
        meta[int(h)] = (WinProbModel.from_files(loaded.read_bytes, wp["prefix"], n_threads),
                        np.asarray(wp["columns"], dtype=np.int64))
    return Scorer(loaded.version, spec["feature_names"], spec["horizons"], models, spec.get("preprocess", "gauss"),
                  stack=stack, meta=meta)


def load_scorer(registry_root: str | Path | None = None, version: str | None = None) -> Scorer:
    """The Scorer of ``version`` (default: the promoted one); RegistryError if none is promoted."""
    from technic.registry import Registry
    reg = Registry(registry_root)
    return scorer_from_version(reg.load(version))


def train_quick_model(bars, fundamentals=None, securities=None, registry_root=None, horizons=(5, 10),
                      end=None, promote_if_empty: bool = True) -> str:
    """Fast training for ``technic demo`` (< 60 s on ~100 symbols x 2 years); return the version.

    Runs a small walk-forward (LightGBM only, few trees) for honest out-of-sample metrics, fits
    the final model on all data up to ``end``, and submits it through the promotion gate against
    the 12-1 momentum baseline. The gate is always evaluated and recorded in the manifest. When
    the registry has no promoted version and ``promote_if_empty``, the first model is promoted
    even if the gate fails, with reason "bootstrap: empty registry" (manifest key
    ``bootstrap_promotion`` says so explicitly): a demo convenience, not a research claim.
    """
    from technic.research import BacktestConfig
    from technic.training import train_and_register
    n_dates = int(np.unique(np.asarray(bars["date"])).size)
    cfg = BacktestConfig(horizons=tuple(int(h) for h in horizons), models=("lgbm",), test_days=126,
                         min_train_days=int(min(252, max(40, n_dates // 2))), k_features=25,
                         max_train_rows=40_000, n_estimators=120, early_stopping_rounds=20, shap_rows=300,
                         model_params={"lgbm": {"learning_rate": 0.05, "min_data_in_leaf": 200}},
                         selector_params={"sample_rows": 5000, "mi_rows": 1000})
    return train_and_register(bars, fundamentals, securities, registry_root=registry_root, cfg=cfg, end=end,
                              promote_if_empty=promote_if_empty)["version"]
