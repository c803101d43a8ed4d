"""Scoring API contract (stream worker): training -> registry -> load_scorer -> score."""

import json
from pathlib import Path

import numpy as np
import pytest

from technic.data import clean_bars, load_bars, load_securities
from technic.errors import RegistryError
from technic.data import sector_map
from technic.features.batch import compute_features, sector_codes
from technic.features.registry import FEATURE_NAMES, registry_hash
from technic.models.scoring import Scorer, load_scorer
from technic.registry import Registry
from technic.training import train_quick_model

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz", end="2015-09-30"))
    sec = load_securities(FIX / "securities_40.csv")
    root = tmp_path_factory.mktemp("registry")
    version = train_quick_model(bars, None, sec, registry_root=root, horizons=(5, 10))
    feats = compute_features(bars, None, sec)
    return root, version, feats, sector_map(sec)


def _groups(s, frame, sectors):
    return sector_codes(frame.index.get_level_values(1), sectors)


def test_quick_model_is_registered_gated_and_promoted(trained):
    root, version, _, _ = trained
    reg = Registry(root)
    assert reg.promoted() == version
    doc = reg.show(version)
    assert doc["status"] == "promoted"
    assert doc["gate"]["reasons"] and "config" in doc["gate"]          # the gate was evaluated and recorded
    if not doc["gate"]["passed"]:
        assert doc["status_reason"].startswith("bootstrap: empty registry")
    assert "registry has no promoted version" in doc["promotion_policy"]
    assert doc["candidate"] == "blend" and doc["lag"] == 1
    assert doc["feature_registry_hash"] == registry_hash()
    assert len(doc["data_hash"]) == 64 and doc["data_range"]["end"] == "2015-09-30"
    assert set(doc["reference_distributions"]) == set(doc["feature_names"])
    q = doc["reference_distributions"][doc["feature_names"][0]]["values"]
    assert len(q) == 11 and q == sorted(q)
    assert doc["fold_metrics"] and "rank_ic_mean" in doc["metrics"]
    assert set(doc["files"]) >= {"scorer.json", "h5_lgbm.txt", "h10_lgbm.txt"}


def test_scorer_contract_and_determinism(trained):
    root, version, feats, sectors = trained
    s = load_scorer(root)
    assert isinstance(s, Scorer) and s.version == version and s.horizons == [5, 10]
    assert set(s.feature_names) <= set(FEATURE_NAMES) and s.win_prob is None
    assert s.served == {5: "blend", 10: "blend"}
    day = feats.index.get_level_values(0).unique()[-1]
    frame = feats.loc[[day]]
    X, g = frame[s.feature_names].to_numpy(np.float64), _groups(s, frame, sectors)
    out = s.score(X, groups=g)
    assert set(out) == {5, 10} and all(v.shape == (len(X),) for v in out.values())
    assert all(np.isfinite(v).all() for v in out.values())
    again = s.score(X.copy(), groups=g.copy())
    assert all(np.array_equal(out[h], again[h]) for h in out)                       # bitwise
    perm = np.random.default_rng(0).permutation(len(X))
    shuffled = s.score(X[perm], groups=g[perm])
    assert all(np.allclose(out[h][perm], shuffled[h], rtol=1e-12, atol=1e-12) for h in out)  # row order free
    assert all(np.array_equal(np.argsort(out[h][perm], kind="stable"), np.argsort(shuffled[h], kind="stable"))
               for h in out)
    s2 = load_scorer(root, version)
    assert all(np.array_equal(out[h], s2.score(X, groups=g)[h]) for h in out)       # reload


def test_stream_and_batch_paths_agree_bitwise(trained):
    """Batch: the walk-forward's path (``Ensemble.predict`` on the normalized panel); stream:
    ``Scorer.predict`` one timestamp at a time (``score_panel``): the same numbers, bitwise."""
    from technic.models.inputs import PanelInputs
    from technic.models.scoring import score_panel
    root, _, feats, sectors = trained
    s = load_scorer(root)
    panel = feats.iloc[-40 * 5:]
    g = _groups(s, panel, sectors)
    inputs = PanelInputs(panel[s.feature_names], g, s.factor_names, s.factor_sector_neutral)
    for h in s.horizons:
        batch = s.ensembles[h].predict(inputs)["served"]
        stream = score_panel(panel, s, groups=g)[f"score_{h}"].to_numpy()
        assert np.array_equal(batch, stream)


def test_contributions(trained):
    root, _, feats, sectors = trained
    s = load_scorer(root)
    frame = feats.loc[[feats.index.get_level_values(0).unique()[-1]]]
    X, g = frame[s.feature_names].to_numpy(), _groups(s, frame, sectors)
    rows = s.contributions(X, top_k=3, horizon=10, groups=g)
    assert len(rows) == len(X) and all(len(r) == 3 for r in rows)
    names = s.feature_names + [f"factor:{f}" for f in s.factor_names]
    for row, x in zip(rows, X):
        for name, value, c in row:
            assert name in names
            if name in s.feature_names:
                v = x[s.feature_names.index(name)]
                assert value == v or (np.isnan(value) and np.isnan(v))
    mags = [abs(t[2]) for t in rows[0]]
    assert mags == sorted(mags, reverse=True)
    assert s.contributions(X[:2])[0] and len(s.contributions(X[:2], top_k=1)[1]) == 1
    with pytest.raises(ValueError, match="shape"):
        s.score(X[:, :-1])


def test_blend_contributions_add_up(trained):
    """The blend's contributions (ML terms scaled by w / sd, factor shares / sd) sum, per row, to the served
    score up to one per-date constant (the z-scores' centring): their ranks agree."""
    root, _, feats, sectors = trained
    s = load_scorer(root)
    frame = feats.loc[[feats.index.get_level_values(0).unique()[-1]]]
    X, g = frame[s.feature_names].to_numpy(), _groups(s, frame, sectors)
    e = s.ensembles[5]
    inp = s.inputs(X, groups=g)
    C, names, _ = e.contributions(inp)
    assert names[-len(s.factor_names):] == [f"factor:{f}" for f in s.factor_names]
    served = e.predict(inp)["served"]
    gap = served - C.sum(axis=1)
    assert np.allclose(gap, gap.mean(), atol=1e-9)



def test_blend_without_ml_tilt_skips_treeshap_exactly(trained, monkeypatch):
    """With w = 0 the ML features get no share: the contributions are the same with or without TreeSHAP."""
    import copy as _copy
    root, _, feats, sectors = trained
    s = load_scorer(root)
    frame = feats.loc[[feats.index.get_level_values(0).unique()[-1]]]
    X, g = frame[s.feature_names].to_numpy(), _groups(s, frame, sectors)
    e = _copy.deepcopy(s.ensembles[5])
    e.blend_.w_ = 0.0
    inp = s.inputs(X, groups=g)
    C, names, values = e.contributions(inp)
    p = len(e.features_)
    assert not C[:, :p].any() and C[:, p:].any()
    for m in e.models_.values():              # the old path: TreeSHAP times w = 0
        monkeypatch.setattr(m, "contributions", lambda A, _m=m: np.ones((len(A), p + 1)), raising=False)
    e.blend_.w_ = 1e-300
    C_shap, _, _ = e.contributions(inp)
    np.testing.assert_array_equal(C[:, p:], C_shap[:, p:])
    np.testing.assert_allclose(C_shap[:, :p], 0.0, atol=1e-290)

def test_load_scorer_errors(trained, tmp_path):
    with pytest.raises(RegistryError, match="no version is promoted"):
        load_scorer(tmp_path / "empty")
    root, version, _, _ = trained
    # tampering is refused
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    p = copy / "versions" / version / "h5_lgbm.txt"
    p.write_text(p.read_text().replace("tree", "tree ", 1))
    with pytest.raises(RegistryError, match="checksum"):
        load_scorer(copy)


def test_registry_cli_round_trip(trained, tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    root, version, _, _ = trained
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
