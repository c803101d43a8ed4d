"""Research inputs: the feature panel (cached), the evaluation universe, sector codes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import TechnicError


def data_hash(bars: pd.DataFrame) -> str:
    """SHA-256 of a frame's values (row order and columns included)."""
    h = hashlib.sha256()
    h.update(",".join(map(str, bars.columns)).encode())
    h.update(pd.util.hash_pandas_object(bars, index=False).to_numpy().tobytes())
    return h.hexdigest()


def cached_features(bars, fundamentals=None, securities=None, alt=None, cache_dir=None,
                    progress: Callable | None = None) -> pd.DataFrame:
    """``compute_features`` with a parquet cache keyed by the inputs' hash and the registry hash."""
    from ..features.batch import compute_features
    from ..features.registry import registry_hash
    if cache_dir is None:
        return compute_features(bars, fundamentals, securities, alt, progress=progress)
    parts = [data_hash(bars), registry_hash()]
    for extra in (fundamentals, alt):
        parts.append(data_hash(extra) if extra is not None else "-")
    if securities is not None:
        parts.append(data_hash(securities) if isinstance(securities, pd.DataFrame) else str(sorted(securities.items())))
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"features_{key}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    frame = compute_features(bars, fundamentals, securities, alt, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp)
    tmp.replace(path)
    return frame


def draw_symbols(symbols, n: int | None = None, seed: int = 0, half: int | None = None) -> list[str]:
    """The evaluation universe: all symbols, ``n`` drawn at random with ``seed`` (never the
    alphabetically first), or one of two complementary random halves (``half`` 1 or 2) of a
    ``seed``-ed permutation. Sorted."""
    syms = np.array(sorted({str(s) for s in symbols}))
    if n is not None and half is not None:
        raise TechnicError("pass either a number of symbols or a half, not both")
    perm = syms[np.random.default_rng(seed).permutation(len(syms))]
    if half is not None:
        if half not in (1, 2):
            raise TechnicError(f"half must be 1 or 2, got {half!r}")
        cut = len(perm) // 2
        return sorted((perm[:cut] if half == 1 else perm[cut:]).tolist())
    if n is None:
        return syms.tolist()
    if n < 1:
        raise TechnicError(f"number of symbols must be >= 1, got {n}")
    return sorted(perm[: min(int(n), len(perm))].tolist())


def group_codes(index: pd.MultiIndex, sectors: dict | None) -> np.ndarray:
    """Per-row sector codes of a (date, symbol) index (-1 = unknown), as the feature stage codes them."""
    from ..features.batch import sector_codes
    syms, inv = np.unique(index.get_level_values(1).astype(str), return_inverse=True)
    return sector_codes(syms, sectors)[inv]
