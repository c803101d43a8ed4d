"""Scoring API contract (stream worker): training -> registry -> load_scorer -> score."""

import json
from pathlib import Path

import numpy as np
import pytest

from technic.data import clean_bars, load_bars, load_securities
from technic.errors import RegistryError
from technic.features.batch import compute_features
from technic.features.registry import FEATURE_NAMES, registry_hash
from technic.models.preprocess import cross_sectional_transform
from technic.models.scoring import Scorer, load_scorer, train_quick_model
from technic.registry import Registry

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz", end="2015-09-30"))
    sec = load_securities(FIX / "securities_40.csv")
    root = tmp_path_factory.mktemp("registry")
    version = train_quick_model(bars, None, sec, registry_root=root, horizons=(5, 10))
    feats = compute_features(bars, None, sec)
    return root, version, feats


def test_quick_model_is_registered_gated_and_promoted(trained):
    root, version, _ = trained
    reg = Registry(root)
    assert reg.promoted() == version
    doc = reg.show(version)
    assert doc["status"] == "promoted"
    assert doc["gate"]["reasons"] and "config" in doc["gate"]          # the gate was evaluated and recorded
    if not doc["gate"]["passed"]:
        assert doc["status_reason"].startswith("bootstrap: empty registry")
    assert "bootstrap" in doc["bootstrap_promotion"]
    assert doc["feature_registry_hash"] == registry_hash()
    assert len(doc["data_hash"]) == 64 and doc["data_range"]["end"] == "2015-09-30"
    assert set(doc["reference_distributions"]) == set(doc["feature_names"])
    q = doc["reference_distributions"][doc["feature_names"][0]]["values"]
    assert len(q) == 11 and q == sorted(q)
    assert doc["fold_metrics"] and "rank_ic_mean" in doc["metrics"]
    assert set(doc["files"]) >= {"scorer.json", "model_h5_lgbm.txt", "model_h10_lgbm.txt"}


def test_scorer_contract_and_determinism(trained):
    root, version, feats = trained
    s = load_scorer(root)
    assert isinstance(s, Scorer) and s.version == version and s.horizons == [5, 10]
    assert set(s.feature_names) <= set(FEATURE_NAMES) and s.win_prob is None
    day = feats.index.get_level_values(0).unique()[-1]
    X = feats.loc[day][s.feature_names].to_numpy(np.float64)
    out = s.score(X)
    assert set(out) == {5, 10} and all(v.shape == (len(X),) for v in out.values())
    assert all(np.isfinite(v).all() for v in out.values())
    again = s.score(X.copy())
    assert all(np.array_equal(out[h], again[h]) for h in out)                       # bitwise
    perm = np.random.default_rng(0).permutation(len(X))
    shuffled = s.score(X[perm])
    assert all(np.array_equal(out[h][perm], shuffled[h]) for h in out)              # row order free
    s2 = load_scorer(root, version)
    assert all(np.array_equal(out[h], s2.score(X)[h]) for h in out)                 # reload


def test_stream_and_batch_paths_agree_bitwise(trained):
    """Batch: rank the whole panel date by date, then predict; stream: Scorer.score per timestamp."""
    root, _, feats = trained
    s = load_scorer(root)
    spec = json.loads(Registry(root).load().read_bytes("scorer.json"))
    entry = spec["models"]["5"][0]
    from technic.models.gbm import load_model
    model = load_model(entry["kind"], Registry(root).load().read_bytes(entry["file"]), n_threads=1)
    panel = feats[s.feature_names].iloc[-40 * 5:]
    Z = cross_sectional_transform(panel)
    batch = model.predict(Z.to_numpy()[:, entry["columns"]])
    stream = np.concatenate([s.score(panel.loc[[d]].to_numpy())[5]
                             for d in panel.index.get_level_values(0).unique()])
    assert np.array_equal(batch, stream)


def test_contributions(trained):
    root, _, feats = trained
    s = load_scorer(root)
    X = feats.loc[feats.index.get_level_values(0).unique()[-1]][s.feature_names].to_numpy()
    rows = s.contributions(X, top_k=3, horizon=10)
    assert len(rows) == len(X) and all(len(r) == 3 for r in rows)
    name, value, c = rows[0][0]
    assert name in s.feature_names
    assert value == X[0, s.feature_names.index(name)] or (np.isnan(value) and np.isnan(X[0, s.feature_names.index(name)]))
    mags = [abs(t[2]) for t in rows[0]]
    assert mags == sorted(mags, reverse=True)
    assert s.contributions(X[:2])[0] and len(s.contributions(X[:2], top_k=1)[1]) == 1
    with pytest.raises(ValueError, match="shape"):
        s.score(X[:, :-1])


def test_load_scorer_errors(trained, tmp_path):
    with pytest.raises(RegistryError, match="no version is promoted"):
        load_scorer(tmp_path / "empty")
    root, version, _ = trained
    # tampering is refused
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    p = copy / "versions" / version / "model_h5_lgbm.txt"
    p.write_text(p.read_text().replace("tree", "tree ", 1))
    with pytest.raises(RegistryError, match="checksum"):
        load_scorer(copy)


def test_registry_cli_round_trip(trained, tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    root, version, _ = trained
    copy = tmp_path / "reg"
    shutil.copytree(root, copy)
    exe = str(Path(sys.executable).parent / "technic")
    env = {**os.environ, "TECHNIC_REGISTRY": str(copy)}
    run = lambda *a: subprocess.run([exe, "registry", *a], capture_output=True, text=True, env=env, timeout=60)  # noqa: E731
    r = run("list")
    assert r.returncode == 0 and version in r.stdout and "promoted" in r.stdout
    r = run("show", version)
    assert r.returncode == 0 and json.loads(r.stdout)["version"] == version
    r = run("rollback")
    assert r.returncode == 2 and "no earlier promoted version" in r.stderr
    r = run("promote", "v9999")
    assert r.returncode == 2 and "unknown version" in r.stderr and "Traceback" not in r.stderr
