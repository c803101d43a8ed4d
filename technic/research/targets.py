"""Training targets (never evaluation labels): per-date rank-gauss of the lagged excess return,
optionally averaged over several horizons and sector-neutral; and the null model's shuffle."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..models.deep import DEEP_NAMES
from ..models.preprocess import cross_sectional_target, date_bounds
from ..models.regime import sector_neutral
from .config import BacktestConfig


def _target(labels: pd.DataFrame, g: int, sectors: dict | None) -> np.ndarray:
    y = sector_neutral(labels[f"excess_{g}"], sectors) if sectors else labels[f"excess_{g}"]
    return cross_sectional_target(y).to_numpy()


def training_targets(labels: pd.DataFrame, cfg: BacktestConfig, sectors: dict | None = None) -> dict:
    """{h: (target (n,), aux (n, H-1) or None)}.

    ``target`` = mean of the per-date rank-gauss of ``excess_g`` over g in ``cfg.target_horizons(h)``
    (NaN where any is missing; sector-neutral when ``cfg.sector_neutral``); ``aux`` = the other
    horizons' targets, the deep models' auxiliary outputs (None without deep models or with one horizon).
    """
    secs = sectors if cfg.sector_neutral else None
    one = {g: _target(labels, g, secs) for h in cfg.horizons for g in cfg.target_horizons(h)}
    T = {h: np.mean([one[g] for g in cfg.target_horizons(h)], axis=0) for h in cfg.horizons}
    deep = any(n in DEEP_NAMES for n in cfg.base_models)
    out = {}
    for h in cfg.horizons:
        others = [T[g] for g in cfg.horizons if g != h]
        out[h] = (T[h], np.column_stack(others) if deep and others else None)
    return out


def shuffle_within_dates(values: np.ndarray, dates: np.ndarray, seed: int) -> np.ndarray:
    """Rows permuted at random within each date (rows sorted by date); a 2-D array moves whole rows,
    so a row's targets stay together. The null model's labels: no information, same distribution."""
    values = np.asarray(values)
    rng = np.random.default_rng(seed)
    perm = np.arange(len(values))
    for a, z in date_bounds(np.asarray(dates)):
        perm[a:z] = a + rng.permutation(z - a)
    return values[perm]
