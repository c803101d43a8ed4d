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

Sequence models (LSTM / Transformer, ``technic.models.deep``): ``seq_len`` is the longest window
of the version's deep models (0 for tree-only versions). They read ``history``: an array
(k, >= seq_len, len(feature_names)) of each symbol's last NORMALIZED rows, oldest first, the
current row last, NaN-padded at the start, where each row is ``rank_gauss`` of its own
timestamp's cross-section (``normalize`` below; ``history_from_panel`` builds it from a feature
panel, the stream keeps it per symbol in a ring). A deep model reads the window's last
``m.seq_len`` rows of its own columns, float32, NaN -> 0: exactly ``build_sequences`` of the
training path, so batch and stream scores are bitwise identical. ``history`` is required (a
ValueError otherwise) when ``seq_len > 0`` and ignored when it is 0.

``predict(X, history, top_k)`` returns everything the stream publishes for one timestamp in one
vectorized pass (the base predictions are computed once and shared by the scores and the
meta-model): per-horizon scores, the primary win probability and the top-k contributions.
Contributions are the TREE models' TreeSHAP values weighted by their stack (or equal) weights;
a deep model's share of the score is not attributed (exact SHAP of a sequence model costs far
more than the 20 ms scoring budget), so with deep models the contributions explain the tree part.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from technic.errors import RegistryError
from technic.explain import top_contributions
from technic.models.gbm import load_model
from technic.models.preprocess import rank_gauss

DEEP_NAMES = ("lstm", "transformer")  # = technic.models.deep.DEEP_NAMES (torch imported lazily)

SPEC_NAME = "scorer.json"


class Scorer:
    """Vectorized scorer of one registry version (see module docstring)."""

    win_prob = None  # callable(X, history=None) when the version has a meta-model

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
        self.seq_len = max([int(m.seq_len) for ms in models.values() for n, m, _ in ms if n in DEEP_NAMES],
                           default=0)
        self.win_prob = self._win_prob if self._meta else None

    def _weights(self, h: int) -> np.ndarray:
        n = len(self._models[h])
        return self._stack[h][0] if h in self._stack else np.full(n, 1.0 / n)

    def _base_preds(self, Z: np.ndarray, h: int, history=None) -> np.ndarray:
        out = []
        for name, m, cols in self._models[h]:
            if name in DEEP_NAMES:
                out.append(m.predict(sequence_input(history, m.seq_len, cols)))
            else:
                out.append(m.predict(Z[:, cols]))
        return np.column_stack(out)

    def _combine(self, P: np.ndarray, h: int) -> np.ndarray:
        if h in self._stack:
            coef, b = self._stack[h]
            return P @ coef + b
        return np.mean(P, axis=1)

    def normalize(self, X) -> np.ndarray:
        """The per-timestamp cross-sectional transform the models were trained on (one timestamp's rows)."""
        return rank_gauss(np.asarray(X, dtype=np.float64), self.preprocess)

    def _prepare(self, X, history=None, sequences: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(X, its normalized Z, checked history); ``sequences=False``: for tree-only work, no history."""
        X = np.asarray(X, dtype=np.float64)
        p = len(self.feature_names)
        if X.ndim != 2 or X.shape[1] != p:
            raise ValueError(f"X must have shape (k, {p}) in feature_names order, got {X.shape}")
        if self.seq_len and sequences:
            if history is None:
                raise ValueError(f"{self.version} has sequence models: pass history of shape "
                                 f"(k, >= {self.seq_len}, {p}) (normalized rows, current row last)")
            history = np.asarray(history)
            if history.ndim != 3 or history.shape[0] != len(X) or history.shape[1] < self.seq_len \
                    or history.shape[2] != p:
                raise ValueError(f"history must have shape ({len(X)}, >= {self.seq_len}, {p}), got {history.shape}")
        return X, rank_gauss(X, self.preprocess), (history if self.seq_len and sequences else None)

    def predict(self, X, history=None, top_k: int = 5) -> dict:
        """One timestamp in one pass: {"scores": {h: (k,)}, "win_prob": (k,) or None,
        "contributions": per row top-k (feature, raw value, contribution) of the primary horizon}."""
        X, Z, H = self._prepare(X, history)
        k = len(X)
        P = {h: (self._base_preds(Z, h, H) if k else np.zeros((0, len(self._models[h])))) for h in self.horizons}
        scores = {h: self._combine(P[h], h) for h in self.horizons}
        win = None
        if self._meta:
            h = self._primary_meta()
            wp, cols = self._meta[h]
            win = wp.predict_proba(np.hstack([Z[:, cols], P[h]]))["pos"] if k else np.zeros(0)
        contrib = self._contributions(X, Z, top_k, self.horizons[0]) if top_k else [[] for _ in range(k)]
        return {"scores": scores, "win_prob": win, "contributions": contrib}

    def score(self, X, history=None) -> dict[int, np.ndarray]:
        """Per-horizon scores (k,) for the k symbols of one timestamp; higher = better expected excess."""
        _, Z, H = self._prepare(X, history)
        if len(Z) == 0:
            return {h: np.zeros(0) for h in self.horizons}
        return {h: self._combine(self._base_preds(Z, h, H), h) for h in self.horizons}

    def win_probs(self, X, history=None) -> dict[int, dict[str, np.ndarray]]:
        """{h: {target: (k,)}} calibrated probabilities (see module docstring)."""
        _, Z, H = self._prepare(X, history)
        out = {}
        for h, (wp, cols) in self._meta.items():
            if len(Z) == 0:
                out[h] = {t: np.zeros(0) for t in wp.boosters_}
                continue
            out[h] = wp.predict_proba(np.hstack([Z[:, cols], self._base_preds(Z, h, H)]))
        return out

    def _primary_meta(self) -> int:
        return min(self._meta, key=self.horizons.index)

    def _win_prob(self, X, history=None) -> np.ndarray:
        return self.win_probs(X, history)[self._primary_meta()]["pos"]

    def contributions(self, X, top_k: int = 5, horizon: int | None = None) -> list[list[tuple[str, float, float]]]:
        """Per row: top-k (feature, raw feature value, SHAP contribution) by |contribution| (tree models)."""
        h = self.horizons[0] if horizon is None else int(horizon)
        if h not in self._models:
            raise ValueError(f"horizon {h} not in this model's horizons {self.horizons}")
        X, Z, _ = self._prepare(X, sequences=False)
        return self._contributions(X, Z, top_k, h)

    def _contributions(self, X, Z, top_k: int, h: int):
        C = np.zeros_like(Z)
        for (name, m, cols), w in zip(self._models[h], self._weights(h)):
            if name not in DEEP_NAMES and len(Z):
                C[:, cols] += m.contributions(Z[:, cols])[:, : len(cols)] * w
        return top_contributions(C, X, self.feature_names, top_k)

    def __repr__(self) -> str:
        kinds = sorted({n for ms in self._models.values() for n, _, _ in ms})
        return f"Scorer({self.version!r}, horizons={self.horizons}, {len(self.feature_names)} features, {kinds})"


def sequence_input(history, seq_len: int, cols) -> np.ndarray:
    """A deep model's input from normalized history: last ``seq_len`` rows, its columns, float32, NaN -> 0
    (the same casts, in the same order, as ``technic.models.deep.build_sequences``)."""
    H = np.asarray(history)[:, -seq_len:, :][:, :, cols]
    return np.nan_to_num(H.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def history_from_panel(features: pd.DataFrame, feature_names: list[str], seq_len: int, rows=None,
                       preprocess: str = "gauss") -> np.ndarray:
    """Normalized history windows (len(rows), seq_len, p) for rows of a (date, symbol) feature panel
    sorted by date: the batch twin of the stream's per-symbol ring."""
    from .deep import build_sequences
    from .preprocess import cross_sectional_transform
    Zp = cross_sectional_transform(features[list(feature_names)], preprocess)
    rows = np.arange(len(features)) if rows is None else np.asarray(rows)
    return build_sequences(Zp.to_numpy(np.float64), features.index.get_level_values(1).to_numpy(), rows, seq_len)


def score_panel(features: pd.DataFrame, scorer: "Scorer", chunk_dates: int = 64) -> pd.DataFrame:
    """Batch scoring of a (date, symbol) feature panel, one timestamp's cross-section at a time:
    columns ``score_{h}`` (and ``win_prob`` when the version has a meta-model)."""
    from .deep import build_sequences
    from .preprocess import cross_sectional_transform, date_bounds
    F = features.sort_index()[list(scorer.feature_names)]
    X = F.to_numpy(np.float64)
    syms = F.index.get_level_values(1).to_numpy()
    bounds = date_bounds(F.index.get_level_values(0).to_numpy())
    Zp = cross_sectional_transform(F, scorer.preprocess).to_numpy(np.float64) if scorer.seq_len else None
    out = {f"score_{h}": np.full(len(F), np.nan) for h in scorer.horizons}
    if scorer.win_prob is not None:
        out["win_prob"] = np.full(len(F), np.nan)
    for c in range(0, len(bounds), chunk_dates):
        block = bounds[c:c + chunk_dates]
        # windows never look more than seq_len rows back per symbol: the panel up to the block's end suffices
        S = (build_sequences(Zp[: block[-1][1]], syms[: block[-1][1]], np.arange(block[0][0], block[-1][1]),
                             scorer.seq_len) if scorer.seq_len else None)
        for a, z in block:
            H = S[a - block[0][0]: z - block[0][0]] if S is not None else None
            r = scorer.predict(X[a:z], history=H, top_k=0)
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
    models = {}
    for h, entries in spec["models"].items():
        models[int(h)] = [(e["kind"], _load_entry(loaded, e, n_threads), np.asarray(e["columns"], dtype=np.int64))
                          for e in entries]
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


def _load_entry(loaded, e: dict, n_threads: int):
    """One base model of the bundle: a tree model file, or a deep model's state_dict + config JSON."""
    if e["kind"] in DEEP_NAMES:
        from .deep import DeepModel
        try:
            return DeepModel.from_files(loaded.read_bytes, e["prefix"], n_threads)
        except ImportError as err:
            raise RegistryError(f"{loaded.version} has a {e['kind']} model: install torch "
                                f"(pip install 'technic[deep]')") from err
    return load_model(e["kind"], loaded.read_bytes(e["file"]), n_threads)


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
