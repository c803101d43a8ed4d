"""Cross-sectional transforms of one timestamp against pandas/numpy oracles.

Conventions (``technic.features.cross_section``): NaN inputs stay NaN and are
ignored by the statistics; sector code -1 = unknown -> NaN for
sector-relative transforms; fewer than ``MIN_NAMES`` valid names (in the
universe or in the group) -> NaN; std is ddof=0 and a zero std -> NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from technic.features.cross_section import (MIN_NAMES, apply_cross_section, cs_rank, cs_zscore, group_demean,
                                            group_rank, group_zscore, market_return)
from technic.features.registry import CROSS_SECTION


def _vec(seed: int, n: int = 60, ties: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    if ties:
        x[rng.choice(n, 10, replace=False)] = 0.5  # exact ties
    x[rng.choice(n, 7, replace=False)] = np.nan
    return x


def _groups(seed: int, n: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = rng.integers(-1, 6, n)  # -1 = unknown sector
    g[:2] = 6  # a group with only 2 names (< MIN_NAMES)
    return g


def _assert(got, want, what):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN pattern")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=what)


# ---------------------------------------------------------------------------
# universe-wide
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_cs_rank_vs_pandas(seed):
    x = _vec(seed)
    want = pd.Series(x).rank(method="average", pct=True).to_numpy()
    got = cs_rank(x)
    _assert(got, want, "cs_rank")
    assert np.nanmin(got) > 0 and np.nanmax(got) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_cs_zscore_vs_numpy(seed):
    x = _vec(seed)
    v = x[~np.isnan(x)]
    want = np.where(np.isnan(x), np.nan, (x - v.mean()) / v.std(ddof=0))
    _assert(cs_zscore(x), want, "cs_zscore")


def test_market_return_vs_nanmean():
    for seed in range(5):
        x = _vec(seed)
        assert market_return(x) == pytest.approx(np.nanmean(x), rel=1e-14)
    assert np.isnan(market_return(np.array([np.nan, np.nan])))
    assert np.isnan(market_return(np.array([])))
    assert market_return(np.array([0.01])) == 0.01  # a mean needs no minimum count


@pytest.mark.parametrize("fn", [cs_rank, cs_zscore])
def test_too_few_names_is_nan(fn):
    for k in range(MIN_NAMES):
        x = np.array([1.0, 2.0, 3.0, np.nan, np.nan])
        x[k:3] = np.nan  # k valid names
        assert np.isnan(fn(x)).all(), (fn.__name__, k)
    x = np.array([1.0, 2.0, 3.0, np.nan])
    assert (~np.isnan(fn(x))[:3]).all() and np.isnan(fn(x)[3])


def test_zscore_constant_is_nan_and_rank_of_ties():
    x = np.array([2.0, 2.0, 2.0, 2.0, np.nan])
    assert np.isnan(cs_zscore(x)).all()
    np.testing.assert_array_equal(cs_rank(x)[:4], [0.625] * 4)  # average of ranks 1..4 = 2.5, / 4
    assert np.isnan(cs_rank(x)[4])


def test_empty_and_all_nan():
    for fn in (cs_rank, cs_zscore):
        assert fn(np.array([])).shape == (0,)
        assert np.isnan(fn(np.full(5, np.nan))).all()
    for fn in (group_demean, group_zscore, group_rank):
        assert fn(np.array([]), np.array([], dtype=np.int64)).shape == (0,)
        assert np.isnan(fn(np.ones(4), np.full(4, -1))).all()  # every sector unknown


# ---------------------------------------------------------------------------
# sector-relative: pandas groupby oracles
# ---------------------------------------------------------------------------
def _oracle_group(x, g, how):
    df = pd.DataFrame({"x": x, "g": g})
    valid = df[(df.g >= 0) & df.x.notna()]
    grp = valid.groupby("g")["x"]
    cnt = grp.transform("count")
    if how == "demean":
        res = valid.x - grp.transform("mean")
    elif how == "zscore":
        sd = grp.transform(lambda s: s.std(ddof=0))
        res = ((valid.x - grp.transform("mean")) / sd).where(sd > 0)
    else:
        res = grp.rank(method="average", pct=True)
    res = res.where(cnt >= MIN_NAMES)
    return res.reindex(df.index).to_numpy(dtype=float)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fn,how", [(group_demean, "demean"), (group_zscore, "zscore"), (group_rank, "rank")])
def test_group_transforms_vs_pandas_groupby(fn, how, seed):
    x, g = _vec(seed), _groups(seed + 100)
    want = _oracle_group(x, g, how)
    got = fn(x, g)
    _assert(got, want, f"{fn.__name__}")
    assert np.isnan(got[g == -1]).all(), "unknown sector -> NaN"
    assert np.isnan(got[g == 6]).all(), "group of 2 names -> NaN"
    assert np.isnan(got[np.isnan(x)]).all()


def test_group_with_nan_members_counts_valid_names_only():
    x = np.array([1.0, 2.0, np.nan, np.nan, 5.0, 6.0, 7.0])
    g = np.array([0, 0, 0, 0, 1, 1, 1])
    for fn in (group_demean, group_zscore, group_rank):
        out = fn(x, g)
        assert np.isnan(out[:4]).all(), fn.__name__  # group 0 has only 2 valid names
        assert not np.isnan(out[4:]).any(), fn.__name__
    np.testing.assert_allclose(group_demean(x, g)[4:], [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(group_rank(x, g)[4:], [1 / 3, 2 / 3, 1.0])


def test_group_zscore_constant_group_is_nan():
    x = np.array([3.0, 3.0, 3.0, 1.0, 2.0, 4.0])
    g = np.array([0, 0, 0, 1, 1, 1])
    out = group_zscore(x, g)
    assert np.isnan(out[:3]).all()
    np.testing.assert_allclose(out[3:], (x[3:] - x[3:].mean()) / x[3:].std())


def test_apply_cross_section_registry_specs():
    """The registry's specs dispatch to the right transform with their sign."""
    n = 40
    sources = {s.source for s in CROSS_SECTION}
    values = {src: _vec(i, n) for i, src in enumerate(sorted(sources))}
    g = _groups(7, n)
    out = apply_cross_section(CROSS_SECTION, values, g)
    assert list(out) == [s.name for s in CROSS_SECTION]
    fns = {"rank": lambda x: cs_rank(x), "zscore": lambda x: cs_zscore(x), "sector_demean": lambda x: group_demean(x, g),
           "sector_zscore": lambda x: group_zscore(x, g), "sector_rank": lambda x: group_rank(x, g)}
    for spec in CROSS_SECTION:
        want = fns[spec.transform](values[spec.source] * spec.sign)
        np.testing.assert_array_equal(out[spec.name], want, err_msg=spec.name)
    rev = next(s for s in CROSS_SECTION if s.sign < 0)
    base = cs_zscore(values[rev.source])
    np.testing.assert_allclose(out[rev.name], -base)
