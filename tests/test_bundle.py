"""The ensemble bundle: LightGBM + XGBoost + LSTM + Transformer, Ridge stack, factor blend and
win-probability meta-model trained, registered as one checksummed version, loaded and scored --
against an independent recomputation, and the stream pipeline against the batch path on the same data."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from stream.stages.models import ModelSource  # noqa: E402
from stream.stages.pipeline import PipelineConfig, ScoringPipeline  # noqa: E402
from stream.tools.publisher import bar_records  # noqa: E402
from technic.data import clean_bars, load_bars, load_securities, sector_map  # noqa: E402
from technic.features.batch import compute_features, sector_codes  # noqa: E402
from technic.models.preprocess import cross_sectional_transform  # noqa: E402
from technic.models.scoring import load_scorer, score_panel  # noqa: E402
from technic.registry import Registry  # noqa: E402
from technic.research import BacktestConfig  # noqa: E402
from technic.training import train_and_register  # noqa: E402

FIX = Path(__file__).parent / "fixtures"
L = 5


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz", end="2015-06-30"))
    sec = load_securities(FIX / "securities_40.csv")
    cfg = BacktestConfig(horizons=(5, 10), models=("lgbm", "xgb", "lstm", "transformer", "stack"),
                         test_days=120, min_train_days=250, k_features=8, max_train_rows=4000, n_estimators=20,
                         shap_rows=50, n_threads=1, stack_folds=2, null=False,
                         selector_params={"sample_rows": 1500, "mi_rows": 400},
                         model_params={"lgbm": {"min_data_in_leaf": 100}},
                         deep_params={"seq_len": L, "hidden": 8, "heads": 2, "epochs": 2, "max_rows": 2000})
    root = tmp_path_factory.mktemp("registry")
    res = train_and_register(bars, None, sec, registry_root=root, cfg=cfg, promote_if_empty=True)
    feats = compute_features(bars, None, sec)
    return root, res["version"], feats, bars, sec


def test_bundle_holds_every_part_of_the_ensemble(bundle):
    root, version, *_ = bundle
    doc = Registry(root).show(version)
    files = set(doc["files"])
    for h in (5, 10):
        assert {f"h{h}_lgbm.txt", f"h{h}_xgb.json", f"h{h}_lstm.pt", f"h{h}_lstm_config.json",
                f"h{h}_transformer.pt", f"h{h}_transformer_config.json"} <= files
        assert any(f.startswith(f"h{h}_meta") for f in files)
    spec = json.loads(Registry(root).load(version).read_bytes("scorer.json"))
    e5 = spec["ensembles"]["5"]
    assert e5["stack"]["models"] == ["lgbm", "xgb", "lstm", "transformer"] and e5["served"] == "blend"
    assert spec["regime"] is None and e5["win_prob"]["prefix"] == "h5_meta" and "w" in e5["blend"]
    lstm = next(e for e in e5["models"] if e["kind"] == "lstm")
    assert lstm["seq_len"] == L and lstm["head"] == 0 and lstm["params"]["hidden"] == 8
    assert set(doc["ensembles"]["5"]["fit_s"]) >= {"lgbm", "xgb", "lstm", "transformer", "oof_base", "win_prob"}
    s = load_scorer(root, version)
    assert s.seq_len == L and callable(s.win_prob)


def _oracle_windows(Z: pd.DataFrame, feats: list[str], day) -> np.ndarray:
    """Per symbol of ``day``: its own last L normalized rows up to ``day`` (plain pandas), zero-padded."""
    out = []
    for sym in Z.loc[day].index:
        own = Z.xs(sym, level="symbol").loc[:day, feats].tail(L).to_numpy().astype(np.float32)
        pad = np.zeros((L - len(own), len(feats)), np.float32)
        out.append(np.nan_to_num(np.vstack([pad, own])))
    return np.stack(out)


def _z(x):
    return (x - x.mean()) / x.std()


def test_scores_equal_an_independent_recomputation(bundle):
    from technic.factors import factor_panel
    root, version, feats, bars, sec = bundle
    s = load_scorer(root, version)
    F = feats.sort_index()
    groups = sector_codes(F.index.get_level_values(1), sector_map(sec))
    Z = cross_sectional_transform(F[s.feature_names])
    day = F.index.get_level_values(0).unique()[-1]
    X = F.loc[day][s.feature_names].to_numpy(np.float64)
    g = groups[F.index.get_level_values(0) == day]
    panel = score_panel(F, s, groups=groups)
    fac = factor_panel(F, groups, s.factor_names).loc[day].to_numpy()
    for h in (5, 10):
        e = s.ensembles[h]
        preds = []
        for name, m in e.models_.items():
            if name in ("lstm", "transformer"):
                preds.append(m.predict(_oracle_windows(Z, e.features_, day)))
            else:
                preds.append(m.predict(Z.loc[day][e.features_].to_numpy()))
        ml = np.column_stack(preds) @ e.stacker_.coef_ + e.stacker_.intercept_
        w = np.ones(len(s.factor_names)) / len(s.factor_names)
        ok = np.isfinite(fac)
        comp = (np.where(ok, fac, 0) @ w) / (ok @ w)
        expect = _z(comp) + e.blend_.w_ * _z(ml)
        # the deep members run in float32: the oracle's own forward pass (other batch shape, other kernel
        # choice) agrees to float32 precision, not to the last float64 digit (5.8e-8 seen on one CPU)
        np.testing.assert_allclose(panel.loc[day, f"score_{h}"].to_numpy(), expect, rtol=0, atol=1e-6)
    one = s.predict(X, history=_oracle_windows(Z, s.feature_names, day), top_k=3, groups=g)
    np.testing.assert_allclose(one["scores"][5], panel.loc[day, "score_5"].to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(one["win_prob"], panel.loc[day, "win_prob"].to_numpy())
    assert ((one["win_prob"] > 0) & (one["win_prob"] < 1)).all()
    assert all(len(c) == 3 for c in one["contributions"])
    with pytest.raises(ValueError, match="history"):
        s.score(X, groups=g)                          # a sequence bundle refuses to score without history


def test_stream_pipeline_scores_equal_batch_with_sequence_models(bundle):
    root, version, feats, bars, sec = bundle
    s = load_scorer(root, version)
    recent = bars[bars["date"] >= bars["date"].unique()[-60]]
    p = ScoringPipeline(ModelSource(None, scorer=s), sectors=sector_map(sec), config=PipelineConfig(grace_s=1e9))
    outs = []
    for i, (_, _, v) in enumerate(bar_records(recent)):
        outs += p.on_bar(v, "technic.bars", 0, i)
    outs += p.flush()
    got = {(o.value["symbol"], o.value["ts"]): o.value for o in outs if o.kind == "scores"}
    rf = compute_features(recent, None, sec)
    expect = score_panel(rf, s, groups=sector_codes(rf.index.get_level_values(1), sector_map(sec)))
    assert len(got) == len(expect) == len(recent)
    diff = max(abs(got[(sym, d.strftime("%Y-%m-%d"))]["scores"][f"{h}d"] - expect.loc[(d, sym), f"score_{h}"])
               for d, sym in expect.index for h in (5, 10))
    assert diff == 0.0
    wp = max(abs(got[(sym, d.strftime("%Y-%m-%d"))]["win_prob"] - expect.loc[(d, sym), "win_prob"])
             for d, sym in expect.index)
    assert wp == 0.0
