"""Model registry: round trips with real models, tamper refusal, gate, promotion history."""

from __future__ import annotations

import os
import threading

import numpy as np
import orjson
import pytest

from technic.errors import RegistryError
from technic.registry import GateConfig, Registry, evaluate_gate
from technic.registry import store as store_mod

MANIFEST = {
    "data_range": ["2013-01-01", "2015-12-31"],
    "data_hash": "abc123",
    "feature_names": ["f0", "f1", "f2"],
    "feature_registry_hash": "feat456",
    "params": {"num_leaves": 4, "learning_rate": 0.1},
    "fold_metrics": [{"fold": 0, "rank_ic_mean": 0.02}, {"fold": 1, "rank_ic_mean": float("nan")}],
    "metrics": {"rank_ic_mean": 0.03, "rank_ic_nw_tstat": 2.5},
    "reference_distributions": {"f0": {"quantiles": np.array([0.1, 0.5, 0.9])}},
}
CONFIG = b'{"horizon": 5}'


def _xy(seed=0, n=20):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, x[:, 0] + 0.1 * rng.normal(size=n)


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path / "reg")


def _reg_simple(reg, metric=0.03, **kw):
    return reg.register({"config.json": CONFIG}, {"metrics": {"rank_ic_mean": metric}, **kw})


# ------------------------------------------------------------------ round trips
def test_lightgbm_and_xgboost_round_trip(reg):
    lgb = pytest.importorskip("lightgbm")
    xgb = pytest.importorskip("xgboost")
    x, y = _xy()
    booster = lgb.train({"objective": "regression", "num_leaves": 4, "min_data_in_leaf": 2,
                         "verbose": -1, "seed": 0}, lgb.Dataset(x, y), num_boost_round=5)
    xgbm = xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(x, y)
    raw_xgb = bytes(xgbm.get_booster().save_raw("json"))

    v = reg.register({"model.txt": booster.model_to_string().encode(), "xgb.json": raw_xgb,
                      "config.json": CONFIG, "ref.npy": _npy(np.arange(5.0))}, MANIFEST)
    assert v == "v0001"

    rows = reg.list()
    assert rows == [{"version": "v0001", "created_at": rows[0]["created_at"], "status": "candidate",
                     "promoted": False, "rank_ic_mean": 0.03}]
    shown = reg.show(v)
    assert shown["version"] == v and shown["status"] == "candidate"
    assert shown["feature_names"] == ["f0", "f1", "f2"]
    assert shown["fold_metrics"][1]["rank_ic_mean"] is None  # NaN -> null
    assert shown["reference_distributions"]["f0"]["quantiles"] == [0.1, 0.5, 0.9]
    assert set(shown["files"]) == {"model.txt", "xgb.json", "config.json", "ref.npy"}
    assert len(shown["files"]["model.txt"]["sha256"]) == 64
    assert shown["created_at"].endswith("+00:00")
    assert reg.path(v) == reg.root / "versions" / "v0001"

    loaded = reg.load(v)
    assert loaded.version == v and loaded.manifest == shown
    back = lgb.Booster(model_str=loaded.read_bytes("model.txt").decode())
    np.testing.assert_array_equal(back.predict(x), booster.predict(x))
    xb = xgb.Booster()
    xb.load_model(bytearray(loaded.read_bytes("xgb.json")))
    np.testing.assert_array_equal(xb.predict(xgb.DMatrix(x)), xgbm.get_booster().predict(xgb.DMatrix(x)))
    np.testing.assert_array_equal(np.load(loaded.path("ref.npy"), allow_pickle=False), np.arange(5.0))


def test_register_from_paths(reg, tmp_path):
    src = tmp_path / "cfg.json"
    src.write_bytes(CONFIG)
    v = reg.register({"config.json": src}, {})
    assert reg.load(v).read_bytes("config.json") == CONFIG
    with pytest.raises(RegistryError, match="does not exist"):
        reg.register({"config.json": tmp_path / "nope.json"}, {})


def _npy(arr) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=arr.dtype == object)
    return buf.getvalue()


# ---------------------------------------------------------------------- tamper
def test_tampered_artifact_is_refused(reg):
    v = reg.register({"model_5.txt": b"tree\nversion=v4\n", "config.json": CONFIG}, {})
    p = reg.path(v) / "model_5.txt"
    data = bytearray(p.read_bytes())
    data[0] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match=r"artifact v0001/model_5.txt failed its checksum: "
                                            r"expected [0-9a-f]+…, got [0-9a-f]+…; refusing to load"):
        reg.load(v)


def test_missing_artifact_is_refused(reg):
    v = reg.register({"config.json": CONFIG}, {})
    (reg.path(v) / "config.json").unlink()
    with pytest.raises(RegistryError, match="v0001/config.json is missing"):
        reg.load(v)


def test_read_bytes_rechecks_after_load(reg):
    v = reg.register({"config.json": CONFIG}, {})
    loaded = reg.load(v)
    (reg.path(v) / "config.json").write_bytes(b'{"horizon": 10}')
    with pytest.raises(RegistryError, match="failed its checksum"):
        loaded.read_bytes("config.json")


def test_tampered_manifest_is_refused_even_with_rewritten_hash(reg):
    from technic.registry import manifest as mf

    v = reg.register({"config.json": CONFIG}, {"metrics": {"rank_ic_mean": 0.01}})
    mpath = reg.path(v) / "manifest.json"
    doc = orjson.loads(mpath.read_bytes())
    doc["metrics"]["rank_ic_mean"] = 0.09
    mpath.write_bytes(orjson.dumps(doc))
    with pytest.raises(RegistryError, match=r"manifest v0001/manifest.json failed its checksum \(embedded"):
        reg.load(v)
    mpath.write_bytes(orjson.dumps(mf.stamp(doc)))  # attacker recomputes the embedded hash
    with pytest.raises(RegistryError, match=r"failed its checksum \(indexed hash\)"):
        reg.load(v)
    with pytest.raises(RegistryError, match="tampered"):
        reg.show(v)


# ------------------------------------------------------------------ formats
@pytest.mark.parametrize("name", ["model.pkl", "model.pickle", "model.joblib", "MODEL.PKL"])
def test_pickle_rejected_by_name(reg, name):
    with pytest.raises(RegistryError, match="pickle is not accepted"):
        reg.register({name: b"\x80\x04K\x01."}, {})
    assert not (reg.root / "versions").exists() or not any((reg.root / "versions").iterdir())


def test_pickle_rejected_by_content(reg):
    import pickle

    with pytest.raises(RegistryError, match="pickle is not accepted"):
        reg.register({"model.txt": pickle.dumps({"a": 1})}, {})
    with pytest.raises(RegistryError, match="pickle is not accepted"):
        reg.register({"arr.npy": _npy(np.array([{"a": 1}], dtype=object))}, {})
    with pytest.raises(RegistryError, match="pickle is not accepted"):
        reg.register({"net.pt": pickle.dumps({"w": [1.0]})}, {})
    assert reg.list() == []
    assert list((reg.root / "versions").iterdir()) == []  # half-written versions cleaned up


@pytest.mark.parametrize("files, msg", [
    ({"model.exe": b"x"}, "unsupported format"),
    ({"../evil.txt": b"x"}, "not a plain file name"),
    ({"manifest.json": b"{}"}, "reserved"),
    ({"bad.json": b"{nope"}, "not valid JSON"),
    ({"x.parquet": b"nope"}, "PAR1"),
    ({}, "at least one artifact"),
])
def test_bad_artifacts(reg, files, msg):
    with pytest.raises(RegistryError, match=msg):
        reg.register(files, {})


def test_reserved_manifest_keys_and_non_json(reg):
    with pytest.raises(RegistryError, match=r"\['version'\] are set by the registry"):
        reg.register({"config.json": CONFIG}, {"version": "v9"})
    with pytest.raises(RegistryError, match="not plain JSON"):
        reg.register({"config.json": CONFIG}, {"obj": object()})


# ----------------------------------------------------------------------- gate
def test_gate_passes_with_numbers():
    d = evaluate_gate({"rank_ic_mean": 0.031, "rank_ic_nw_tstat": 2.4},
                      {"momentum": {"rank_ic_mean": 0.016}, "reversal": {"rank_ic_mean": 0.014}},
                      None, GateConfig(margin=0.01))
    assert d.passed and bool(d)
    assert d.reasons == ["rank_ic_mean 0.031 > momentum 0.016 + margin 0.010",
                         "rank_ic_mean 0.031 > reversal 0.014 + margin 0.010",
                         "no incumbent: first promotion",
                         "rank_ic_nw_tstat 2.40 >= min 2.00"]


def test_gate_fails_on_margin_and_incumbent():
    cand = {"rank_ic_mean": 0.021, "rank_ic_nw_tstat": 3.0}
    d = evaluate_gate(cand, {"name": "momentum", "rank_ic_mean": 0.016}, None, GateConfig(margin=0.01))
    assert not d.passed
    assert "rank_ic_mean 0.021 <= momentum 0.016 + margin 0.010" in d.reasons
    assert evaluate_gate(cand, {"rank_ic_mean": 0.016}, None).passed  # margin 0
    d = evaluate_gate(cand, {"rank_ic_mean": 0.016}, {"rank_ic_mean": 0.025}, incumbent_name="v0002")
    assert not d.passed and "rank_ic_mean 0.021 <= v0002 0.025 + margin 0.000" in d.reasons
    assert evaluate_gate(cand, {"rank_ic_mean": 0.016}, {"rank_ic_mean": 0.020}).passed


def test_gate_tstat_fallback_and_missing_numbers():
    base = {"rank_ic_mean": 0.0}
    d = evaluate_gate({"rank_ic_mean": 0.05, "rank_ic_tstat": 1.5}, base, None)
    assert not d.passed and "rank_ic_tstat 1.50 < min 2.00" in d.reasons
    assert evaluate_gate({"rank_ic_mean": 0.05, "rank_ic_tstat": 2.5}, base, None).passed
    assert not evaluate_gate({"rank_ic_mean": 0.05}, base, None).passed
    assert not evaluate_gate({"rank_ic_mean": float("nan"), "rank_ic_tstat": 9}, base, None).passed
    d = evaluate_gate({"rank_ic_mean": 0.05, "rank_ic_tstat": 9}, {}, None)
    assert not d.passed and "no baseline" in d.reasons[0]
    d = evaluate_gate({"rank_ic_mean": 0.05, "rank_ic_tstat": 9}, base, {})
    assert not d.passed and "incumbent has no finite rank_ic_mean" in d.reasons[1]


def test_submit_promotes_then_rejects_weaker(reg):
    files = {"config.json": CONFIG}
    base = {"momentum": {"rank_ic_mean": 0.016}}
    v1, d1 = reg.submit(files, {}, {"rank_ic_mean": 0.03, "rank_ic_nw_tstat": 2.5}, base)
    assert d1.passed and reg.promoted() == v1
    assert reg.show(v1)["metrics"]["rank_ic_mean"] == 0.03
    assert reg.show(v1)["gate"]["passed"] is True
    v2, d2 = reg.submit(files, {}, {"rank_ic_mean": 0.025, "rank_ic_nw_tstat": 3.0}, base)
    assert not d2.passed and reg.promoted() == v1
    m2 = reg.show(v2)
    assert m2["status"] == "rejected" and "0.025 <= v0001 0.030" in m2["status_reason"]
    v3, d3 = reg.submit(files, {}, {"rank_ic_mean": 0.04, "rank_ic_nw_tstat": 2.1}, base,
                        GateConfig(margin=0.005))
    assert d3.passed and reg.promoted() == v3
    assert reg.show(v1)["status"] == "retired"
    reg.load(v1)  # status rewrites keep the manifest hash consistent
    reg.load()


# ------------------------------------------------------------------ lifecycle
def test_promote_reject_rollback_history(reg):
    v1, v2, v3 = (_reg_simple(reg) for _ in range(3))
    assert reg.promoted() is None
    with pytest.raises(RegistryError, match="nothing is promoted"):
        reg.rollback()
    with pytest.raises(RegistryError, match="no version is promoted"):
        reg.load()
    reg.promote(v1, "first")
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        reg.rollback()
    reg.promote(v2)
    reg.reject(v3, "overfit: IC 0.2 smells of leakage")
    with pytest.raises(RegistryError, match="was rejected"):
        reg.promote(v3)
    with pytest.raises(RegistryError, match="cannot roll back to v0003"):
        reg.rollback(to=v3)
    with pytest.raises(RegistryError, match="is the promoted version"):
        reg.reject(v2, "x")
    assert reg.show(v3)["status_reason"] == "overfit: IC 0.2 smells of leakage"
    assert reg.load().version == v2

    assert reg.rollback() == v1
    assert reg.promoted() == v1 and reg.show(v2)["status"] == "rolled_back"
    assert reg.show(v1)["status"] == "promoted"
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        reg.rollback()
    assert reg.rollback(to=v2) == v2
    with pytest.raises(RegistryError, match=f"technic registry promote {v3} --force"):  # the CLI flag, not a kwarg
        reg.promote(v3, "no override")
    reg.promote(v3, "human override", force=True)
    assert [(e["version"], e["action"]) for e in reg.history()] == [
        (v1, "promote"), (v2, "promote"), (v3, "reject"), (v1, "rollback"), (v2, "rollback"), (v3, "promote")]
    assert all(set(e) >= {"version", "action", "at", "reason"} for e in reg.history())
    rows = {r["version"]: r for r in reg.list()}
    assert rows[v3]["promoted"] and not rows[v1]["promoted"]
    for v in (v1, v2, v3):
        reg.load(v)


def test_unknown_versions(reg):
    _reg_simple(reg)
    with pytest.raises(RegistryError, match="bad version id 'latest'"):
        reg.load("latest")
    with pytest.raises(RegistryError, match=r"unknown version 'v0009' .*known: v0001"):
        reg.show("v0009")
    with pytest.raises(RegistryError, match="unknown version"):
        reg.promote("v0002")


def test_default_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TECHNIC_REGISTRY", str(tmp_path / "envreg"))
    assert Registry().root == tmp_path / "envreg"
    monkeypatch.delenv("TECHNIC_REGISTRY")
    assert str(Registry().root) == "registry"


def test_watch_token_changes_on_promotion(reg):
    assert reg.watch_token() == (0, None)
    v = _reg_simple(reg)
    t0 = reg.watch_token()
    reg.promote(v)
    t1 = reg.watch_token()
    assert t1 != t0 and t1[1] == v


# ----------------------------------------------------------------- concurrency
def test_concurrent_registers_get_distinct_versions(tmp_path):
    root = tmp_path / "reg"
    out, errors = [], []
    barrier = threading.Barrier(8)

    def work(i):
        try:
            barrier.wait()
            out.append(Registry(root).register({"config.json": CONFIG}, {"i": i}))
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(out) == [f"v{i:04d}" for i in range(1, 9)]
    reg = Registry(root)
    assert [r["version"] for r in reg.list()] == sorted(out)
    for v in out:
        reg.load(v)


def test_allocation_skips_taken_folder(reg):
    (reg.root / "versions" / "v0001").mkdir(parents=True)  # e.g. another writer mid-register
    assert _reg_simple(reg) == "v0002"


def test_state_write_is_atomic(reg, monkeypatch):
    v = _reg_simple(reg)
    state_path = reg.root / "state.json"
    before = state_path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        reg.promote(v)
    monkeypatch.undo()
    assert state_path.read_bytes() == before  # old state intact
    assert not [p for p in reg.root.iterdir() if p.name.endswith(".tmp")]  # no temp litter
    state = orjson.loads(before)
    assert state["promoted"] is None and v in state["index"]
    assert os.path.exists(state_path)


def test_loads_never_see_a_half_applied_status_change(tmp_path):
    """A stream worker loading while training promotes must never get a spurious 'tampered'."""
    root = tmp_path / "reg"
    writer = Registry(root)
    v1, v2 = _reg_simple(writer), _reg_simple(writer)
    writer.promote(v1)
    stop, errors = threading.Event(), []

    def read():
        reader = Registry(root)
        while not stop.is_set():
            try:
                for v in (v1, v2, None):
                    reader.load(v)
            except Exception as exc:
                errors.append(exc)
                return

    t = threading.Thread(target=read)
    t.start()
    try:
        for _ in range(15):
            writer.promote(v2)
            writer.rollback()
    finally:
        stop.set()
        t.join()
    assert not errors, errors[0]


def test_submit_metrics_must_match_manifest(reg):
    with pytest.raises(RegistryError, match="differs from candidate_metrics"):
        reg.submit({"config.json": CONFIG}, {"metrics": {"rank_ic_mean": 0.9}},
                   {"rank_ic_mean": 0.03, "rank_ic_nw_tstat": 2.5}, {"rank_ic_mean": 0.0})
    assert reg.list() == []
