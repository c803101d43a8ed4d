"""The compiled LightGBM predictor (technic.models.tree_predict) against its oracle, ``Booster.predict``:
bitwise equal (``np.array_equal``) on models trained with NaN, zeros, zero_as_missing, use_missing off,
constant features and single-leaf trees, for inputs at every threshold and its neighbours, NaN,
+/-inf, signed zeros and values around LightGBM's kZeroThreshold; unsupported models are refused and
``LGBMModel`` falls back to LightGBM for them."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pytest

from technic.models.gbm import LGBMModel, load_model
from technic.models.tree_predict import (BLOCK, KZERO, S_INDICATOR, S_RIGHT, S_ZERO, CompiledTrees, Unsupported,
                                         compile_booster, from_model_string)

P = 7  # features: 0-2 signal, 3 mostly zero, 4 constant, 5 with NaN, 6 noise


def _data(n=600, seed=0, nan=True, zeros=True):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, P))
    if zeros:
        X[rng.random(n) < 0.3, 0] = 0.0
        X[rng.random(n) < 0.8, 3] = 0.0
    X[:, 4] = 1.5
    if nan:
        X[rng.random(n) < 0.1, 1] = np.nan
        X[rng.random(n) < 0.4, 5] = np.nan
    y = (X[:, 0] > 0) + np.nan_to_num(X[:, 1], nan=-1.0) + 0.5 * np.sign(X[:, 3]) \
        + np.isnan(X[:, 5]) * 0.7 + 0.1 * rng.standard_normal(n)
    return X, y


def _train(params, rounds=30, **data):
    X, y = _data(**data)
    base = dict(objective="regression", num_leaves=15, min_data_in_leaf=3, learning_rate=0.2,
                verbosity=-1, num_threads=1, seed=1, deterministic=True)
    return lgb.train({**base, **params}, lgb.Dataset(X, y), num_boost_round=rounds)


def _thresholds(booster) -> dict[int, np.ndarray]:
    """Each feature's split thresholds, read from the model text."""
    out: dict[int, list[float]] = {}
    text = booster.model_to_string()
    feats = [list(map(int, line[14:].split())) for line in text.splitlines() if line.startswith("split_feature=")]
    thrs = [list(map(float, line[10:].split())) for line in text.splitlines() if line.startswith("threshold=")]
    for fs, ts in zip(feats, thrs):
        for f, t in zip(fs, ts):
            out.setdefault(f, []).append(t)
    return {f: np.unique(v) for f, v in out.items()}


def _probe_inputs(booster, seed=0) -> np.ndarray:
    """Rows of random data with one feature set to a probe value: every threshold, its np.nextafter
    neighbours, NaN, +/-inf, +/-0.0, +/-kZeroThreshold and its neighbours, tiny and huge values."""
    rng = np.random.default_rng(seed)
    X, _ = _data(n=400, seed=seed + 100)
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, KZERO, -KZERO, np.nextafter(KZERO, 1),
                -np.nextafter(KZERO, 1), np.nextafter(KZERO, 0), -np.nextafter(KZERO, 0), 1e-36, -1e-36,
                1e-20, -1e-20, 5e-324, -5e-324, 1e300, -1e300, 1.7976931348623157e308, 1.0, -1.0, 1.5]
    rows = [X]
    for f in range(P):
        vals = list(specials)
        for t in _thresholds(booster).get(f, []):
            vals += [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)]
        R = X[rng.integers(0, len(X), len(vals))].copy()
        R[:, f] = vals
        rows.append(R)
    M = rng.standard_normal((200, P))  # many features special at once, in random mixes
    mask = rng.random(M.shape) < 0.5
    M[mask] = np.asarray(specials)[rng.integers(0, len(specials), int(mask.sum()))]
    rows.append(M)
    return np.vstack(rows)


def _assert_exact(booster, X, k=None):
    c = compile_booster(booster, k)
    assert c is not None
    ref = booster.predict(X, num_iteration=k)
    got = c.predict(X)
    assert got.dtype == np.float64 and got.shape == ref.shape
    assert np.array_equal(got, ref), f"max |diff| {np.nanmax(np.abs(got - ref))}"
    return c


MODELS = {
    "default": dict(),
    "deep_small_leaves": dict(num_leaves=63, min_data_in_leaf=1, min_sum_hessian_in_leaf=0.0),
    "depth3": dict(max_depth=3, num_leaves=8),
    "zero_as_missing": dict(zero_as_missing=True),
    "no_missing": dict(use_missing=False),
    "no_missing_zero": dict(use_missing=False, zero_as_missing=True),
    "huber_l2reg_bins": dict(objective="huber", lambda_l2=5.0, max_bin=15),
    "l1_bagging": dict(objective="regression_l1", bagging_fraction=0.5, bagging_freq=1, feature_fraction=0.6),
    "quantile": dict(objective="quantile", alpha=0.8),
    "no_boost_from_average": dict(boost_from_average=False),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bitwise_equal_to_booster_predict(name):
    b = _train(MODELS[name])
    X = _probe_inputs(b)
    n = b.current_iteration()
    for k in (None, n, 1, 7, n + 5):
        _assert_exact(b, X, k)
    # the loop order (rows outer, blocks, trees outer) does not change a bit
    c = compile_booster(b)
    ref = b.predict(X)
    for block in (1, 3, BLOCK, len(X)):
        assert np.array_equal(c.predict(X, block=block), ref)
    # a booster loaded from its own text (what from_bytes builds) predicts the same
    b2 = lgb.Booster(model_str=b.model_to_string())
    assert np.array_equal(compile_booster(b2).predict(X), ref)


def test_data_without_nan_or_zeros_and_a_constant_feature():
    b = _train({}, nan=False, zeros=False)
    _assert_exact(b, _probe_inputs(b))


def test_single_leaf_trees():
    # nothing is worth a split: LightGBM keeps one single-leaf tree (the average) and stops
    b1 = _train(dict(min_gain_to_split=1e30), rounds=5)
    c = _assert_exact(b1, _probe_inputs(b1))
    assert c.num_trees == 1 and c.depth[0] == 0
    # continued training: a single-leaf first tree, then trees with splits
    X, y = _data()
    b = lgb.train(dict(objective="regression", num_leaves=6, verbosity=-1, num_threads=1), lgb.Dataset(X, y),
                  num_boost_round=6, init_model=b1)
    c = _assert_exact(b, _probe_inputs(b))
    assert c.depth[0] == 0 and np.all(c.depth[1:] > 0)
    # a single-leaf tree between others (LightGBM loads this model text and predicts with it)
    blocks = b.model_to_string().split("\nTree=")
    blocks[3] = ("2\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\n"
                 "left_child=\nright_child=\nleaf_value=0.12345678901234568\nleaf_weight=\nleaf_count=600\n"
                 "internal_value=\ninternal_weight=\ninternal_count=\nis_linear=0\nshrinkage=0.2\n\n")
    text = "\n".join(line for line in "\nTree=".join(blocks).split("\n") if not line.startswith("tree_sizes="))
    b2 = lgb.Booster(model_str=text)
    c = _assert_exact(b2, _probe_inputs(b2))
    assert list(c.depth == 0)[:4] == [True, False, True, False]


def test_kzero_threshold_is_the_float_literal():
    """LightGBM reads |v| <= kZeroThreshold (float32(1e-35)) in a dense row as 0.0: a model that splits
    at -kZeroThreshold sends -kZeroThreshold with the zeros and its neighbour further out the other way."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 2))
    X[rng.random(3000) < 0.4, 0] = 0.0
    y = (X[:, 0] < 0) * 1.0 + (X[:, 0] > 0) * 2.0 + 0.01 * rng.standard_normal(3000)
    b = lgb.train(dict(objective="regression", num_leaves=7, min_data_in_leaf=5, verbosity=-1, num_threads=1),
                  lgb.Dataset(X, y), num_boost_round=5)
    assert -KZERO in _thresholds(b)[0]
    vals = [0.0, -KZERO, -np.nextafter(KZERO, 1), KZERO, np.nextafter(KZERO, 1), -1e-16, 1e-16]
    Z = np.zeros((len(vals), 2))
    Z[:, 0] = vals
    ref = b.predict(Z)
    assert ref[1] == ref[0] and ref[2] != ref[0] and ref[3] == ref[0] and ref[4] != ref[0]
    assert ref[5] == ref[2] and ref[6] == ref[4]
    assert np.array_equal(compile_booster(b).predict(Z), ref)


def _dump_nodes(booster):
    """Per tree: ({split_index: threshold}, {leaf_index: leaf_value}) from ``dump_model``."""
    out = []
    for tree in booster.dump_model()["tree_info"]:
        splits, leaves, stack = {}, {}, [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "leaf_value" in node:
                leaves[node.get("leaf_index", 0)] = node["leaf_value"]
            else:
                splits[node["split_index"]] = node["threshold"]
                stack += [node["left_child"], node["right_child"]]
        out.append((splits, leaves))
    return out


def test_inf_threshold_and_text_vs_dump_model():
    """Late, noisy splits can be "NaN vs the rest" at threshold +inf. The model text writes 'inf'
    (and every other threshold, every leaf value) exactly; dump_model writes that threshold as 1e300,
    which 1e301 exceeds, and agrees everywhere else."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 8))
    X[rng.random(X.shape) < 0.3] = 0.0
    X[rng.random(X.shape) < 0.1] = np.nan
    y = 2 * X[:, 0] + np.nan_to_num(X[:, 1]) + 0.1 * rng.standard_normal(2000)
    b = lgb.train(dict(objective="regression", num_leaves=31, min_data_in_leaf=3, verbosity=-1, num_threads=1,
                       deterministic=True), lgb.Dataset(X, y), num_boost_round=50)
    f = [f for f, t in _thresholds(b).items() if np.inf in t]
    assert f
    Z = np.tile(X[:40], (5, 1))
    Z[40:80, f[0]], Z[80:120, f[0]], Z[120:160, f[0]], Z[160:, f[0]] = np.inf, 1e301, np.nan, -np.inf
    c = _assert_exact(b, Z)
    n_inf = 0
    for t, (splits, leaves) in enumerate(_dump_nodes(b)):
        o, ni = int(c.roots[t]), len(splits)
        for i, h in splits.items():
            if c.col_kind[c.code[o + i]] & S_INDICATOR:  # the text's 'inf', compared as an indicator
                assert h == 1e300 and c.thr[o + i] == 0.5
                n_inf += 1
            else:
                assert c.thr[o + i] == (np.inf if h == 1e300 else h)
        assert [c.val[o + ni + j] for j in range(len(leaves))] == [leaves[j] for j in range(len(leaves))]
    assert n_inf >= 1


def test_every_decision_type_and_extreme_thresholds():
    """Model text edited node by node (LightGBM loads it and is the oracle): every missing type
    (None, Zero, NaN) with both default sides, thresholds +/-inf, 0.0, +/-kZeroThreshold."""
    b = _train(MODELS["default"])
    rng = np.random.default_rng(7)
    specials = ["inf", "-inf", "0", "1.0000000180025095e-35", "-1.0000000180025095e-35"]
    kinds = set()
    for trial in range(4):
        lines = []
        for line in b.model_to_string().split("\n"):
            if line.startswith("tree_sizes="):
                continue  # the edited trees change size; LightGBM parses without it
            if line.startswith("decision_type="):
                n = len(line.split("=")[1].split())
                line = "decision_type=" + " ".join(str(v) for v in rng.choice([0, 2, 4, 6, 8, 10], n))
            elif line.startswith("threshold="):
                ts = line.split("=")[1].split()
                ts = [specials[rng.integers(len(specials))] if rng.random() < 0.4 else t for t in ts]
                line = "threshold=" + " ".join(ts)
            lines.append(line)
        b2 = lgb.Booster(model_str="\n".join(lines))
        c = _assert_exact(b2, _probe_inputs(b2, seed=trial))
        kinds |= set(c.col_kind.tolist())
    # every column transform was exercised: S = {NaN} or {NaN, 0.0}; -> -inf, +inf, or indicator
    assert kinds == {0, S_RIGHT, S_ZERO, S_ZERO | S_RIGHT, S_INDICATOR, S_ZERO | S_INDICATOR}


@pytest.mark.parametrize("params,why", [
    (dict(objective="binary"), "objective"),
    (dict(objective="poisson"), "objective"),
    (dict(objective="regression", reg_sqrt=True), "objective"),
    (dict(objective="multiclass", num_class=3), "per iteration"),
    (dict(boosting="rf", bagging_fraction=0.5, bagging_freq=1), "average_output"),
    (dict(linear_tree=True), "linear"),
    (dict(categorical_feature=[6]), "categorical"),
])
def test_unsupported_models_are_refused(params, why):
    X, y = _data()
    X[:, 6] = np.floor(np.abs(X[:, 6]) * 3)  # a small-integer column for the categorical case
    y = y + 3.0 * (X[:, 6] == 1)
    if params.get("objective") == "binary":
        y = (y > np.median(y)).astype(float)
    elif params.get("objective") == "poisson":
        y = np.abs(y)
    elif params.get("objective") == "multiclass":
        y = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3])).astype(float)
    params = dict(params)
    cat = params.pop("categorical_feature", "auto")
    b = lgb.train({"verbosity": -1, "num_threads": 1, "min_data_in_leaf": 5, **params},
                  lgb.Dataset(X, y, categorical_feature=cat), num_boost_round=5)
    if why == "categorical":  # the model does split on the category
        assert any(line.startswith("num_cat=") and line != "num_cat=0" for line in b.model_to_string().splitlines())
    assert compile_booster(b) is None
    with pytest.raises(Unsupported, match=why):
        from_model_string(b.model_to_string())
    # LGBMModel falls back to LightGBM and still equals booster.predict
    m = LGBMModel(n_threads=1)
    m.booster_, m.best_iteration_, m.n_features_in_ = b, b.current_iteration(), X.shape[1]
    assert m._compiled_trees() is None
    assert np.array_equal(m.predict(X[:50]), b.predict(X[:50], num_iteration=b.current_iteration()))


def test_malformed_text_is_refused():
    with pytest.raises(Unsupported):
        from_model_string("tree\nversion=v4\n")
    b = _train({}, rounds=2)
    bad = b.model_to_string().replace("objective=regression", "objective=custom", 1)
    with pytest.raises(Unsupported, match="objective"):
        from_model_string(bad)


def test_wrong_shapes_raise():
    c = compile_booster(_train({}, rounds=2))
    assert isinstance(c, CompiledTrees)
    with pytest.raises(ValueError):
        c.predict(np.zeros((3, P + 1)))
    with pytest.raises(ValueError):
        c.predict(np.zeros(P))
    assert c.predict(np.zeros((0, P))).shape == (0,)


def test_lgbm_model_uses_the_compiled_form_bitwise():
    rng = np.random.default_rng(0)
    n = 800
    X = rng.standard_normal((n, 12))
    X[rng.random(X.shape) < 0.05] = np.nan
    X[rng.random(X.shape) < 0.05] = 0.0
    y = 0.3 * np.nan_to_num(X[:, 0]) - 0.2 * np.nan_to_num(X[:, 1]) + rng.standard_normal(n)
    dates = np.repeat(np.arange(n // 40), 40)
    Xq = np.vstack([X[:300], _probe_like(X, rng)])
    # early stopping (LightGBM keeps the best iteration's trees) and a fixed size (all 40 kept)
    for kw in (dict(stop_metric="l2", early_stopping_rounds=5), dict(stop_metric="none")):
        m = LGBMModel(params={"min_data_in_leaf": 20}, n_estimators=40, gap_days=2, n_threads=1, **kw)
        m.fit(X, y, dates)
        ref = m.booster_.predict(Xq, num_iteration=m.best_iteration_)
        assert np.array_equal(m.predict(Xq), ref)
        assert m._compiled_trees() is not None and m._compiled_trees().num_trees == m.best_iteration_
    assert m.best_iteration_ == 40
    assert np.array_equal(m.predict(np.asfortranarray(X[:300].astype(np.float32))),
                          m.booster_.predict(X[:300].astype(np.float32).astype(np.float64)))
    # a changed best_iteration_ rebuilds the compiled form
    m.best_iteration_ = 3
    assert np.array_equal(m.predict(Xq), m.booster_.predict(Xq, num_iteration=3))
    assert m._compiled_trees().num_trees == 3
    # serialization is unchanged: the cache is neither in to_bytes nor in a pickle
    data = m.to_bytes()
    assert data == m.booster_.model_to_string(num_iteration=3).encode()
    ref3 = m.booster_.predict(Xq, num_iteration=3)
    m2 = load_model("lgbm", data, n_threads=1)
    assert np.array_equal(m2.predict(Xq), ref3)
    state = m.__getstate__()
    assert "_compiled" in m.__dict__ and "_compiled" not in state
    m3 = pickle.loads(pickle.dumps(m))
    assert "_compiled" not in m3.__dict__
    assert np.array_equal(m3.predict(Xq), ref3)
    # a wrong width still reaches LightGBM (and its error)
    with pytest.raises(lgb.basic.LightGBMError):
        m.predict(Xq[:, :5])


def _probe_like(X, rng):
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, KZERO, -KZERO, 1e-40, 1e300])
    Z = X[rng.integers(0, len(X), 200)].copy()
    mask = rng.random(Z.shape) < 0.3
    Z[mask] = specials[rng.integers(0, len(specials), mask.sum())]
    return Z
