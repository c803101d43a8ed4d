"""Walk-forward research: fold hygiene, leakage probes, metrics.json, bad input, CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data import clean_bars, load_bars, load_securities
from technic.errors import TechnicError
from technic.evaluation import metrics as M
from technic.features.batch import compute_features
from technic.labels import make_labels
from technic.evaluation.predictions import read_predictions
from technic.research import BacktestConfig, draw_symbols, run_backtest, walk_forward

FIX = Path(__file__).parent / "fixtures"
REQUIRED = ["rank_ic_mean", "rank_ic_std", "rank_icir", "rank_ic_tstat", "ic_mean", "hit_rate",
            "top_decile_hit_rate", "long_short_ann_return", "sharpe_net", "max_drawdown", "turnover", "n_days"]


def small_cfg(**kw):
    base = dict(horizons=(5,), models=("lgbm",), test_days=140, min_train_days=200, k_features=12,
                max_train_rows=8000, n_estimators=30, shap_rows=200, n_threads=1, stack_folds=2,
                selector_params={"sample_rows": 3000, "mi_rows": 800},
                model_params={"lgbm": {"min_data_in_leaf": 100}, "xgb": {"min_child_weight": 100.0}})
    base.update(kw)
    return BacktestConfig(**base)


def pred(res, name, h=5):
    return res["predictions"][h][name]


@pytest.fixture(scope="module")
def data():
    """40 symbols x 2.5 years cut from the dev data (tests/fixtures/bars_40x2y.csv.gz)."""
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz"))
    sec = load_securities(FIX / "securities_40.csv")
    feats = compute_features(bars, None, sec)
    labels = make_labels(bars, (1, 5, 10, 20))
    return bars, sec, feats, labels


@pytest.fixture(scope="module")
def wf(data):
    _, _, feats, labels = data
    return walk_forward(feats, labels, small_cfg())


def test_folds_are_purged_and_out_of_sample(data, wf):
    _, _, feats, _ = data
    dates = feats.index.get_level_values(0).unique()
    for row in wf["folds"]:
        between = ((dates > row["train_end"]) & (dates < row["test_start"])).sum()
        assert between >= 5 + 1          # >= purge (horizon + execution lag) trading dates between train and test
        assert row["train_end"] < row["test_start"]
    p = pred(wf, "lgbm")
    first_test = min(r["test_start"] for r in wf["folds"])
    assert p.index.get_level_values(0).min() == first_test
    assert p.notna().mean() > 0.99
    assert {"lgbm", "composite", "blend", "null"} <= set(wf["predictions"][5].columns)
    assert 0.0 <= wf["selection"][5]["stability_jaccard"] <= 1.0


def test_out_of_sample_rank_ic_is_not_suspiciously_high(data, wf):
    """GUIDE section 3: daily RankIC above 0.15 out of sample means leakage."""
    _, _, _, labels = data
    frame = wf["predictions"][5]
    y = labels["excess_5"].reindex(frame.index)
    for name in frame.columns.drop("fold"):
        ic = M.daily_ic(frame[name], y, "spearman").mean()
        assert abs(ic) < 0.15, f"{name}: out-of-sample RankIC {ic:.3f} > 0.15: leakage?"


def test_null_model_is_trained_on_shuffled_labels(data, wf):
    """The null model (the ML pipeline on labels shuffled within each date) has no skill, and it is a
    different model from the one trained on the real labels."""
    _, _, _, labels = data
    frame = wf["predictions"][5]
    y = labels["excess_5"].reindex(frame.index)
    s = M.ic_summary(M.daily_ic(frame["null"], y, "spearman"), horizon=5)
    assert abs(s["nw_tstat"]) < 3.0 and abs(s["mean"]) < 0.03, s
    assert not np.allclose(frame["null"], frame["lgbm"])


def test_shuffled_labels_give_zero_rank_ic(data):
    """Shuffle the label within each date: any skill left would be leakage through features/folds."""
    _, _, feats, labels = data
    rng = np.random.default_rng(7)
    shuffled = labels.copy()
    for col in ("excess_5", "fwd_ret_5"):
        v = shuffled[col].to_numpy().copy()
        for d, pos in shuffled.groupby(level=0).indices.items():
            v[pos] = v[rng.permutation(pos)]
        shuffled[col] = v
    res = walk_forward(feats, shuffled, small_cfg(null=False, blend=False))
    p = pred(res, "lgbm")
    ic = M.daily_ic(p, shuffled["excess_5"].reindex(p.index), "spearman")
    s = M.ic_summary(ic, horizon=5)
    assert abs(s["nw_tstat"]) < 3.0, s      # indistinguishable from 0
    assert abs(s["mean"]) < 0.03, s


def test_future_labels_cannot_change_past_predictions(data, wf):
    """Perturbing labels from the last fold's test start onwards leaves earlier folds' predictions unchanged."""
    _, _, feats, labels = data
    last = wf["folds"][-1]["test_start"]
    bent = labels.copy()
    later = bent.index.get_level_values(0) >= last
    bent.loc[later, ["excess_5", "fwd_ret_5"]] = np.random.default_rng(0).normal(size=(later.sum(), 2))
    res = walk_forward(feats, bent, small_cfg())
    for name in ("lgbm", "blend", "null"):
        a, b = pred(wf, name), pred(res, name)
        before = a.index.get_level_values(0) < last
        assert np.array_equal(a[before].to_numpy(), b[before].to_numpy()), name


def test_symbol_subset_changes_only_which_rows_count(data):
    """--symbols N: a seeded random draw (not the alphabetically first); features and per-date transforms
    still use every symbol, so a subset's rows get the same factor scores as in the full run."""
    bars, sec, feats, labels = data
    syms = sorted(bars["symbol"].unique())
    a = draw_symbols(syms, 20, seed=1)
    assert a == draw_symbols(syms, 20, seed=1) and a != syms[:20] and a != draw_symbols(syms, 20, seed=2)
    h1, h2 = draw_symbols(syms, half=1, seed=3), draw_symbols(syms, half=2, seed=3)
    assert not set(h1) & set(h2) and sorted(h1 + h2) == syms
    cfg = small_cfg(null=False, k_features=0)
    full = walk_forward(feats, labels, cfg, sectors=None)["predictions"][5]
    sub = walk_forward(feats, labels, cfg, sectors=None, universe=a)["predictions"][5]
    assert set(sub.index.get_level_values(1)) == set(a)
    common = full.loc[sub.index]
    assert np.array_equal(sub["composite"].to_numpy(), common["composite"].to_numpy())


def test_run_backtest_writes_predictions_metrics_and_report(data, tmp_path):
    bars, sec, _, _ = data
    cfg = small_cfg(models=("lgbm", "xgb"), horizons=(5, 10), test_days=300, min_train_days=300)
    doc = run_backtest(bars, None, sec, out_dir=tmp_path, cfg=cfg, cache_dir=tmp_path / "cache")
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert list((tmp_path / "cache").glob("features_*.parquet"))
    models = {"lgbm", "xgb", "ensemble", "composite", "blend", "null"}
    for h in ("5", "10"):
        hd = on_disk["horizons"][h]
        assert set(hd["models"]) == models
        assert {"momentum_12_1", "reversal_5", "equal_weight", "value", "size"} <= set(hd["baselines"])
        for kind in ("models", "baselines"):
            for name, e in hd[kind].items():
                missing = [k for k in REQUIRED if k not in e["metrics"]]
                assert not missing, (h, name, missing)
        assert hd["baselines"]["equal_weight"]["metrics"]["rank_ic_mean"] is None
        assert hd["baselines"]["equal_weight"]["metrics"]["long_only_ann_return"] is not None
        assert hd["models"]["lgbm"]["importance"]
        assert on_disk["skill"][h]["blend"]["verdict"] in ("skill", "no evidence of skill")
        assert on_disk["degeneracy"][h]["lgbm"]["trees_min"] == 30
        assert on_disk["comparison"][h]["served"] == "blend"
    assert on_disk["meta"]["served"] == "blend" and on_disk["meta"]["lag"] == 1
    assert doc["meta"]["purge_days"] == 41      # longest training target: 4 x horizon 10 (target mix 1,2,4) + lag 1
    # predictions.parquet: the documented columns, the lagged labels, one column per model and baseline
    frame, info = read_predictions(tmp_path / "predictions.parquet")
    assert list(frame.columns[:6]) == ["date", "symbol", "horizon", "fold", "label", "fwd_ret"]
    assert {"label_h1", "label_h5", "label_h10", "label_h20"} <= set(frame.columns)
    assert models | {"momentum_12_1", "reversal_5", "value"} <= set(frame.columns)
    assert set(info["models"]) == models and info["served"] == "blend" and info["null"] == "null"
    lab = make_labels(bars, (5,), lag=1)["excess_5"]
    f5 = frame[frame["horizon"] == 5].set_index(["date", "symbol"])
    np.testing.assert_array_equal(f5["label"].to_numpy(), lab.reindex(f5.index).to_numpy())


def test_evaluate_recomputes_the_backtest_metrics(data, tmp_path):
    """technic evaluate --predictions F gives the backtest's own metrics.json, byte for byte."""
    bars, sec, _, _ = data
    run_backtest(bars, None, sec, out_dir=tmp_path / "bt", cfg=small_cfg(test_days=300, min_train_days=300))
    r = _cli("evaluate", "--predictions", str(tmp_path / "bt" / "predictions.parquet"), "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ev" / "metrics.json").read_text() == (tmp_path / "bt" / "metrics.json").read_text()
    r = _cli("evaluate", "--predictions", str(tmp_path / "bt" / "metrics.json"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "parquet" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("kw, msg", [
    (dict(models=("rf",)), "unknown model"),
    (dict(horizons=(7,)), "no horizon 7"),
    (dict(min_train_days=2000), "too few dates"),
])
def test_bad_input_gives_technic_errors(data, kw, msg):
    _, _, feats, labels = data
    with pytest.raises(TechnicError, match=msg):
        walk_forward(feats, labels, small_cfg(**kw))


def _cli(*args, env=None):
    exe = Path(sys.executable).parent / "technic"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=120)


def test_cli_bad_input_is_a_clear_error_without_traceback(tmp_path):
    bars = str(FIX / "bars_40x2y.csv.gz")
    for args, msg in [(["--models", "lgbm,rf"], "unknown model"),
                      (["--start", "2016-01-01", "--end", "2015-01-01"], "empty date range"),
                      (["--end", "2014-06-01"], "too few dates"),
                      (["--symbols", "5"], "too few symbols"),
                      (["--symbols", "0"], "--symbols must be >= 1"),
                      (["--half", "3"], "--half must be 1 or 2"),
                      (["--lag", "-1"], "--lag"),
                      (["--target-mix", "1,x"], "--target-mix")]:
        r = _cli("backtest", "--bars", bars, "--out", str(tmp_path / "o"), "--threads", "1", *args)
        assert r.returncode == 2, r.stderr
        assert msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _cli("registry", "show", "v0001", "--registry", str(tmp_path / "reg"))
    assert r.returncode == 2 and "unknown version" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.json").write_text('{"model_params": {}, "learning_rate": 0.1}')
    for args, msg in [(["--params", str(tmp_path / "bad.json")], "unknown key"),
                      (["--params", str(tmp_path / "missing.json")], "cannot read JSON"),
                      (["--deep-preset", "huge"], "--deep-preset must be one of"),
                      (["--sector-neutral"], "--sector-neutral needs --securities")]:
        r = _cli("backtest", "--bars", bars, "--out", str(tmp_path / "o"), *args)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_params_file_overrides_config_and_flags_override_the_file(tmp_path):
    from technic.commands.research import make_config
    f = tmp_path / "best_params.json"
    f.write_text('{"study_name": "technic-lgbm-h5", "model": "lgbm", "best_value": 0.02, "params": {}, '
                 '"model_params": {"lgbm": {"num_leaves": 15}}, "deep_params": {"hidden": 16}, "stack_folds": 4}')
    cfg = make_config([5], "lgbm,lstm,stack", f)
    assert cfg.model_params == {"lgbm": {"num_leaves": 15}} and cfg.deep_params == {"hidden": 16}
    assert cfg.stack_folds == 4 and cfg.deep_preset == "small"
    cfg = make_config([5], "lgbm", f, "seed", stack_folds=2)
    assert cfg.stack_folds == 2 and cfg.deep_preset == "seed"


@pytest.mark.slow
def test_full_dev_data_rank_ic_below_leakage_threshold(tmp_path):
    from technic.paths import data_dir, dev_files
    files = dev_files(data_dir())
    bars, _ = clean_bars(load_bars(files["bars"]))
    sec = load_securities(files["securities"])
    cfg = BacktestConfig(horizons=(5,), test_days=252)
    doc = run_backtest(bars, None, sec, out_dir=tmp_path, cfg=cfg)
    for kind in ("models", "baselines"):
        for name, e in doc["horizons"]["5"][kind].items():
            v = e["metrics"]["rank_ic_mean"]
            assert v is None or abs(v) < 0.15, (name, v)
