"""Factor library against an independent pandas/scipy oracle, date by date."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from technic.factors import FACTOR_NAMES, FACTORS, FactorComposite, factor_inputs, factor_panel, factor_scores


def _panel(seed=0, n_dates=6, n_sym=40):
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2020-01-01", periods=n_dates, freq="B")
    syms = [f"S{i:02d}" for i in range(n_sym)]
    idx = pd.MultiIndex.from_product([dates, syms], names=["date", "symbol"])
    cols = factor_inputs()
    X = pd.DataFrame(rng.normal(size=(len(idx), len(cols))), index=idx, columns=cols)
    X = X.mask(rng.random(X.shape) < 0.1)            # 10 % missing
    X.loc[(dates[min(1, n_dates - 1)], syms[:5]), "mom_5"] = 0.25      # ties
    groups = np.tile(np.array([i % 4 if i < 36 else -1 for i in range(n_sym)]), n_dates)  # 4 sectors + unknown
    return X, groups


def _gauss(s: pd.Series) -> pd.Series:
    r = s.rank(method="average")
    return pd.Series(norm.ppf((r - 0.5) / s.notna().sum()), index=s.index)


def _oracle(X: pd.DataFrame, groups, sector_neutral=False) -> pd.DataFrame:
    out = []
    g = pd.Series(groups, index=X.index)
    for d, day in X.groupby(level=0):
        gd = g.loc[day.index]
        res = {}
        for f in FACTORS:
            zs = []
            for t in f.terms:
                v = t.sign * day[t.feature]
                if t.transform == "sector_mean":
                    means = v.groupby(gd.where(gd >= 0)).mean()
                    v = gd.map(means).where(gd >= 0)
                zs.append(_gauss(v))
            s = _gauss(pd.concat(zs, axis=1).mean(axis=1))
            if sector_neutral and f.name != "industry_momentum":
                known = gd.where(gd >= 0)
                cnt = s.groupby(known).transform("count")
                mean = s.groupby(known).transform("mean")
                s = _gauss(s.where(~(cnt >= 3), s - mean))
            res[f.name] = s
        out.append(pd.DataFrame(res))
    return pd.concat(out)


@pytest.mark.parametrize("neutral", [False, True])
def test_factor_panel_matches_oracle(neutral):
    X, groups = _panel()
    got = factor_panel(X, groups, sector_neutral=neutral)
    exp = _oracle(X, groups, neutral)[list(FACTOR_NAMES)]
    pd.testing.assert_frame_equal(got, exp, rtol=1e-12, atol=1e-12)


def test_scores_do_not_depend_on_row_order():
    X, groups = _panel(seed=3, n_dates=1)
    cols = list(X.columns)
    A = factor_scores(X.to_numpy(), cols, groups)
    perm = np.random.default_rng(1).permutation(len(X))
    B = factor_scores(X.to_numpy()[perm], cols, groups[perm])
    np.testing.assert_array_equal(A[perm], B)


def test_signs_follow_the_literature():
    X, groups = _panel(seed=4, n_dates=1)
    X["mom_5"] = np.arange(len(X), dtype=float)          # last week's winners ...
    X["log_market_cap"] = np.arange(len(X), dtype=float)  # ... are also the biggest
    F = factor_panel(X, groups)
    assert F["reversal_5"].is_monotonic_decreasing       # ... so reversal ranks them last
    assert F["size"].is_monotonic_decreasing


def test_composite_renormalizes_over_available_factors():
    F = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [0.0, 2.0, -1.0], [2.0, 2.0, 2.0]])
    c = FactorComposite(("momentum_12_1", "value", "size"), weights=[1, 1, 2])
    raw = pd.Series([(1 * 1 + 2 * 3) / 3, np.nan, (0 + 2 - 2) / 4, 2.0])
    np.testing.assert_allclose(c.score(F), raw.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.nansum(c.contributions(F), axis=1)[[0, 2, 3]], raw.to_numpy()[[0, 2, 3]])
    assert FactorComposite.from_dict(c.to_dict()).weights.tolist() == c.weights.tolist()
    with pytest.raises(ValueError, match="non-negative"):
        FactorComposite(("size",), weights=[-1])
    with pytest.raises(KeyError, match="unknown factor"):
        FactorComposite(("nope",))


def test_missing_input_column_is_an_error():
    X, groups = _panel(n_dates=1)
    with pytest.raises(ValueError, match="needs feature column"):
        factor_scores(X.drop(columns="mom_5").to_numpy(), list(X.columns.drop("mom_5")), groups)
