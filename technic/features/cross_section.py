"""Cross-sectional transforms of one timestamp, shared by batch and stream.

Every function takes the vectors of all symbols present at ONE bar timestamp
(in a fixed symbol order) and returns a vector of the same length. The batch
evaluator calls them date by date; the stream's cross-section stage calls them
once per completed timestamp. One implementation, so the two cannot diverge.

NaN inputs stay NaN and are ignored by the statistics; a group (sector) code
of -1 means "unknown" and yields NaN for sector-relative transforms.
"""

from __future__ import annotations

import numpy as np

from technic.features.kernels import tie_average_ranks

MIN_NAMES = 3  # fewer valid names than this -> NaN (a rank of 2 names says little)


def market_return(ret: np.ndarray) -> float:
    """Equal-weight mean of the valid returns of one timestamp (NaN if none)."""
    v = ret[~np.isnan(ret)]
    return float(v.sum() / v.size) if v.size else float("nan")


def cs_rank(x: np.ndarray) -> np.ndarray:
    """Percentile rank in (0, 1], average ranks for ties (as pandas rank(pct=True))."""
    out = np.full(x.shape, np.nan)
    ok = ~np.isnan(x)
    v = x[ok]
    if v.size < MIN_NAMES:
        return out
    out[ok] = tie_average_ranks(v, np.argsort(v)) / v.size
    return out


def cs_zscore(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std (ddof=0) across names; NaN when std is 0."""
    out = np.full(x.shape, np.nan)
    ok = ~np.isnan(x)
    v = x[ok]
    if v.size < MIN_NAMES:
        return out
    mu = v.sum() / v.size
    sd = np.sqrt(((v - mu) ** 2).sum() / v.size)
    if sd > 0:
        out[ok] = (v - mu) / sd
    return out


def _group_stats(x: np.ndarray, groups: np.ndarray):
    ok = ~np.isnan(x) & (groups >= 0)
    g = groups[ok]
    v = x[ok]
    size = int(groups.max()) + 1 if groups.size and groups.max() >= 0 else 0
    cnt = np.bincount(g, minlength=size).astype(float)
    s = np.bincount(g, weights=v, minlength=size)
    with np.errstate(all="ignore"):
        mean = s / cnt
        ss = np.bincount(g, weights=(v - mean[g]) ** 2, minlength=size)
        sd = np.sqrt(ss / cnt)
    return ok, g, cnt, mean, sd


def group_demean(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """x minus the mean of its group (sector); NaN for unknown or tiny groups."""
    out = np.full(x.shape, np.nan)
    ok, g, cnt, mean, _ = _group_stats(x, groups)
    keep = cnt[g] >= MIN_NAMES
    idx = np.flatnonzero(ok)[keep]
    out[idx] = x[idx] - mean[g[keep]]
    return out


def group_zscore(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(x - group mean) / group std (ddof=0); NaN for unknown/tiny/constant groups."""
    out = np.full(x.shape, np.nan)
    ok, g, cnt, mean, sd = _group_stats(x, groups)
    keep = (cnt[g] >= MIN_NAMES) & (sd[g] > 0)
    idx = np.flatnonzero(ok)[keep]
    out[idx] = (x[idx] - mean[g[keep]]) / sd[g[keep]]
    return out


def group_rank(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Percentile rank within the group (sector)."""
    out = np.full(x.shape, np.nan)
    for code in np.unique(groups[groups >= 0]):
        m = groups == code
        out[m] = cs_rank(x[m])
    return out


TRANSFORMS = {
    "rank": lambda x, g: cs_rank(x),
    "zscore": lambda x, g: cs_zscore(x),
    "sector_demean": group_demean,
    "sector_zscore": group_zscore,
    "sector_rank": group_rank,
}


def apply_cross_section(specs, values: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, np.ndarray]:
    """Evaluate cross-sectional feature specs on one timestamp.

    ``specs`` are ``CrossSectionFeature`` declarations (name, transform,
    source, sign); ``values`` maps source feature names to vectors of the
    names present; ``groups`` holds their sector codes (-1 = unknown).
    """
    out = {}
    for spec in specs:
        x = values[spec.source] * spec.sign
        out[spec.name] = TRANSFORMS[spec.transform](x, groups)
    return out
