"""Base learners by name: construction from an ``EnsembleConfig``, seed bagging, save and load.

Every base model has ``fit(A, y, dates) -> self``, ``predict(A)``, ``best_iteration_`` (trees kept;
0 for ridge, epochs for deep models) and a safe serialization (LightGBM text, XGBoost JSON, ridge
JSON, torch state_dict + config JSON). Tree and linear models also have ``contributions(A)`` (SHAP
values, bias last). ``SeedBag`` averages ``n_seeds`` copies of a tree model fitted with different
seeds (row/column subsampling differ), a variance reduction the registry stores as one entry.
"""

from __future__ import annotations

import numpy as np

from .config import LINEAR_NAMES, TREE_NAMES, EnsembleConfig
from .deep import DEEP_NAMES


class SeedBag:
    """Mean of tree models of one kind fitted with seeds ``seed, seed + 1, ...``."""

    def __init__(self, members: list):
        self.members = members
        self.kind = members[0].kind

    def fit(self, A, y, dates=None):
        for m in self.members:
            m.fit(A, y, dates)
        self.best_iteration_ = int(np.median([m.best_iteration_ for m in self.members]))
        return self

    def predict(self, A) -> np.ndarray:
        return np.mean([m.predict(A) for m in self.members], axis=0)

    def contributions(self, A) -> np.ndarray:
        return np.mean([m.contributions(A) for m in self.members], axis=0)

    @property
    def trees(self) -> list[int]:
        return [int(m.best_iteration_) for m in self.members]


def make_base(name: str, cfg: EnsembleConfig, horizon: int, seed: int):
    """A fresh, unfitted base model; ``horizon`` sets the inner validation gap (>= label look-ahead)."""
    params = (cfg.model_params or {}).get(name)
    if name in DEEP_NAMES:
        from .deep import DeepModel
        return DeepModel(name, cfg.deep_preset, gap_days=horizon, seed=seed, n_threads=cfg.n_threads,
                         **cfg.deep_params)
    if name in LINEAR_NAMES:
        from .linear import RidgeModel
        return RidgeModel(**{"gap_days": horizon, "seed": seed, "n_threads": cfg.n_threads, **(params or {})})
    if name in TREE_NAMES:
        from .gbm import make_model

        def one(s):
            return make_model(name, params=params, n_estimators=cfg.n_estimators,
                              early_stopping_rounds=cfg.early_stopping_rounds, gap_days=horizon, seed=s,
                              n_threads=cfg.n_threads, stop_metric=cfg.stop_metric, min_trees=cfg.min_trees)
        return one(seed) if cfg.n_seeds == 1 else SeedBag([one(seed + j) for j in range(cfg.n_seeds)])
    raise ValueError(f"unknown base model {name!r}")


def make_bases(cfg: EnsembleConfig, horizon: int, seed: int) -> dict:
    return {name: make_base(name, cfg, horizon, seed) for name in cfg.base_models}


def save_base(name: str, model, prefix: str) -> tuple[dict, dict[str, bytes]]:
    """(registry entry, files) of a fitted base model; the entry records sizes and parameters."""
    if name in DEEP_NAMES:
        files = model.to_files(prefix)
        return {"kind": name, "prefix": prefix, "seq_len": model.seq_len, "head": 0,
                "epochs": int(model.best_iteration_), "params": model.config}, files
    members = model.members if isinstance(model, SeedBag) else [model]
    files, names = {}, []
    for j, m in enumerate(members):
        fname = f"{prefix}{'' if len(members) == 1 else f'_s{j}'}{m.suffix}"
        files[fname] = m.to_bytes()
        names.append(fname)
    return {"kind": name, "files": names, "trees": [int(m.best_iteration_) for m in members],
            "params": members[0].get_params()}, files


def load_base(entry: dict, read, n_threads: int = 2):
    """The fitted base model of a registry entry (``read(name) -> bytes``, checksum-verified)."""
    kind = entry["kind"]
    if kind in DEEP_NAMES:
        from .deep import DeepModel
        return DeepModel.from_files(read, entry["prefix"], n_threads)
    if kind in LINEAR_NAMES:
        from .linear import RidgeModel
        return RidgeModel.from_bytes(read(entry["files"][0]), n_threads)
    from .gbm import load_model
    members = [load_model(kind, read(f), n_threads) for f in entry["files"]]
    if len(members) == 1:
        return members[0]
    bag = SeedBag(members)
    bag.best_iteration_ = int(np.median([m.best_iteration_ for m in members]))
    return bag
