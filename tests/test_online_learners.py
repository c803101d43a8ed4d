"""OnlineLearner: learns a linear relation; JSON state restores predictions and learning exactly."""

import json

import numpy as np
from river import linear_model, optim, preprocessing

from stream.online.learners import OnlineLearner


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 3.0, 0.1, 10.0] + [0, 5, 0, -2]
    y = X @ [0.5, 0.2, 0.0, -0.05] + 0.1 * rng.normal(size=n)
    return X, y


def test_same_as_plain_river_pipeline_and_learns():
    X, y = _data()
    m = OnlineLearner(["a", "b", "c", "d"], lr=0.01, l2=1e-4, intercept_lr=0.01).learn_many(X[:500], y[:500])
    ref = preprocessing.StandardScaler() | linear_model.LinearRegression(optimizer=optim.SGD(0.01), l2=1e-4,
                                                                         intercept_lr=0.01)
    for row, t in zip(X[:500], y[:500]):
        ref.learn_one(dict(zip("abcd", row)), t)
    p = m.predict_many(X[500:])
    one = [m.predict_one(dict(zip("abcd", r))) for r in X[500:]]
    np.testing.assert_array_equal(one, [ref.predict_one(dict(zip("abcd", r))) for r in X[500:]])
    np.testing.assert_allclose(p, one, rtol=1e-12, atol=1e-12)  # vectorized predict_many = River's formula
    assert np.corrcoef(p, y[500:])[0, 1] > 0.9


def test_state_round_trip_exact():
    X, y = _data(seed=1)
    m = OnlineLearner(["a", "b", "c", "d"]).learn_many(X[:300], y[:300])
    state = json.dumps(m.to_dict())
    r = OnlineLearner.from_dict(json.loads(state))
    np.testing.assert_array_equal(m.predict_many(X[300:]), r.predict_many(X[300:]))
    m.learn_many(X[300:], y[300:])
    r.learn_many(X[300:], y[300:])
    assert json.dumps(m.to_dict()) == json.dumps(r.to_dict())
    np.testing.assert_array_equal(m.predict_many(X), r.predict_many(X))


def test_nan_inputs_and_targets():
    m = OnlineLearner(["a", "b"])
    m.learn_many(np.array([[np.nan, 1.0], [1.0, 2.0]]), np.array([1.0, np.nan]))
    assert m.n_learned == 1
    assert np.isfinite(m.predict_many(np.array([[np.nan, np.nan]]))).all()
