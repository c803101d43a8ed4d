"""Ridge on normalized features against scikit-learn's Ridge; alpha chosen inside the fold on the
last dates by validation RankIC; contributions are exact; JSON round trip."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from technic.models.linear import RidgeModel


def _data(seed=0, n_dates=120, k=50, p=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_dates * k, p))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = np.nan_to_num(X) @ np.linspace(0.1, -0.05, p) + rng.normal(size=len(X))
    return X, y, np.repeat(np.arange(n_dates), k)


def test_fixed_alpha_equals_sklearn():
    X, y, d = _data()
    m = RidgeModel(alpha=50.0).fit(X, y, d)
    ref = Ridge(alpha=50.0).fit(np.nan_to_num(X), y)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-10)
    assert m.intercept_ == pytest.approx(ref.intercept_, rel=1e-10)
    np.testing.assert_allclose(m.predict(X), ref.predict(np.nan_to_num(X)), rtol=1e-10)


def test_alpha_is_chosen_inside_the_fold_and_contributions_add_up():
    X, y, d = _data(1)
    m = RidgeModel(gap_days=5).fit(X, y, d)
    assert set(m.alpha_scores_) == set(m.alphas) and m.alpha_ == max(m.alpha_scores_, key=m.alpha_scores_.get)
    C = m.contributions(X)
    np.testing.assert_allclose(C.sum(axis=1), m.predict(X), rtol=1e-12)
    back = RidgeModel.from_bytes(m.to_bytes())
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
