"""Alpha blend: the tilt formula against a numerical maximization, shrinkage of a noise ML to 0,
the cap, and the fit on synthetic signals with known skill."""

import numpy as np
import pytest

from technic.models.blend import BlendWeight, combine, optimal_tilt


def _ic_of_sum(ic_a, ic_b, rho, w):
    return (ic_a + w * ic_b) / np.sqrt(1 + 2 * w * rho + w * w)


@pytest.mark.parametrize("ic_a, ic_b, rho", [(0.02, 0.01, 0.2), (0.015, 0.015, 0.3), (0.02, 0.002, 0.5),
                                             (0.01, 0.03, 0.1), (-0.01, 0.01, 0.2), (0.02, -0.01, 0.0)])
def test_optimal_tilt_maximizes_the_ic_of_the_sum(ic_a, ic_b, rho):
    grid = np.linspace(0, 1, 100001)
    best = grid[np.argmax(_ic_of_sum(ic_a, ic_b, rho, grid))]
    assert optimal_tilt(ic_a, ic_b, rho, 1.0) == pytest.approx(best, abs=1e-4)


def _synthetic(ic_ml, n_dates=300, k=200, rho=0.2, seed=0):
    rng = np.random.default_rng(seed)
    dates = np.repeat(np.arange(n_dates), k)
    comp = rng.normal(size=n_dates * k)
    ml = rho * comp + np.sqrt(1 - rho ** 2) * rng.normal(size=n_dates * k)
    y = 0.03 * comp + ic_ml * ml + rng.normal(size=n_dates * k)
    return comp, ml, y, dates


def test_noise_ml_gets_no_weight_and_a_real_one_does():
    comp, ml, y, d = _synthetic(0.0)
    b = BlendWeight(1.0, horizon=1).fit(comp, ml, y, d)
    assert b.w_ < 0.1 and b.shrink_ < 1                     # a noise ML is shrunk to (near) nothing
    comp, ml, y, d = _synthetic(0.05)
    b = BlendWeight(1.0, horizon=1).fit(comp, ml, y, d)
    assert b.t_m_ > 5 and b.shrink_ > 0.95 and b.w_ == 1.0  # strong ML: capped at the prior's weight
    assert BlendWeight(0.5, horizon=1).fit(comp, ml, y, d).w_ == 0.5
    back = BlendWeight.from_dict(b.to_dict())
    np.testing.assert_array_equal(back.predict(comp, ml), b.predict(comp, ml))


def test_combine_treats_a_missing_side_as_the_centre():
    c = np.array([1.0, np.nan, np.nan, -1.0])
    m = np.array([2.0, 3.0, np.nan, np.nan])
    np.testing.assert_array_equal(combine(c, m, 0.5), [2.0, 1.5, np.nan, -1.0])


def test_date_zscore_against_pandas_per_date_and_for_one_timestamp():
    """Per-date z-score (ddof 0, finite values only; < 2 finite or zero spread -> 0) against a pandas
    groupby oracle, for a panel and for the stream's single timestamp (its own code path)."""
    import pandas as pd

    from technic.models.inputs import date_zscore
    rng = np.random.default_rng(5)
    x = rng.normal(size=300)
    x[rng.random(300) < 0.1] = np.nan
    x[:3] = np.inf
    dates = np.repeat(np.arange(6), 50)
    x[250:300] = 2.0                       # a date with zero spread
    for d in (dates, np.zeros(300, dtype=np.int64)):
        s = pd.Series(np.where(np.isfinite(x), x, np.nan))
        g = s.groupby(d)
        sd = g.transform(lambda v: v.std(ddof=0))
        want = ((s - g.transform("mean")) / sd).where(sd > 0, 0.0).where(s.notna())
        np.testing.assert_allclose(date_zscore(x, d), want.to_numpy(), rtol=1e-12, atol=1e-12)
