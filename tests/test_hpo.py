"""Walk-forward HPO: the objective is walk_forward's fold RankIC, pruning per fold, the holdout is
never seen by the search, the study persists and resumes, CLI errors."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import FixedTrial, TrialState  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from technic.cli import app  # noqa: E402
from technic.data import clean_bars, load_bars, load_securities  # noqa: E402
from technic.errors import TechnicError  # noqa: E402
from technic.features.batch import compute_features  # noqa: E402
from technic.hpo import (WalkForwardObjective, default_params, lgbm_space, run_hpo,  # noqa: E402
                         with_params)
from technic.labels import make_labels  # noqa: E402
from technic.research import BacktestConfig, walk_forward  # noqa: E402

FIX = Path(__file__).parent / "fixtures"
BARS = FIX / "bars_40x2y.csv.gz"
HOLD = 100
PARAMS = {"learning_rate": 0.08, "num_leaves": 15, "max_depth": 4, "min_data_in_leaf": 120,
          "feature_fraction": 0.8, "bagging_fraction": 0.9, "lambda_l2": 1.0}
# tiny walk-forward: 2 search folds of 160 dates, all features (no selection), few rows and trees
SMALL = ["--test-days", "160", "--min-train-days", "200", "--holdout-days", str(HOLD), "--k-features", "0",
         "--max-train-rows", "4000", "--threads", "1"]


def tiny_cfg(**kw):
    base = dict(horizons=(5,), models=("lgbm",), test_days=160, min_train_days=200, k_features=0,
                max_train_rows=4000, n_estimators=30, n_threads=1, null=False)
    return BacktestConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    bars, _ = clean_bars(load_bars(BARS))
    sec = load_securities(FIX / "securities_40.csv")
    return bars, sec, compute_features(bars, None, sec), make_labels(bars, (1, 5, 10, 20))


@pytest.fixture(scope="module")
def obj(data):
    _, _, feats, labels = data
    return WalkForwardObjective(feats, labels, tiny_cfg(), "lgbm", 5, holdout_days=HOLD)


@pytest.mark.parametrize("model, params", [
    ("lgbm", PARAMS),
    ("xgb", {"eta": 0.1, "max_depth": 3, "min_child_weight": 80.0, "subsample": 0.9, "colsample_bytree": 0.7,
             "reg_lambda": 0.5}),
    ("transformer", {"lr": 3e-3, "hidden": 16, "transformer_layers": 1, "dropout": 0.1}),
])
def test_objective_equals_walk_forward_fold_rank_ic(data, obj, model, params):
    """Trial value = mean over folds of the fold's mean daily RankIC of an independent walk_forward run."""
    _, _, feats, labels = data
    cfg = tiny_cfg(models=(model,), deep_params={"epochs": 1, "max_rows": 2000})
    if model != "lgbm":
        obj = WalkForwardObjective(feats, labels, cfg, model, 5, holdout_days=HOLD)
    value = obj(FixedTrial(params))
    keep = feats.index.get_level_values(0) <= obj.search_end   # the search period only
    wf = walk_forward(feats[keep], labels[keep], with_params(cfg, model, 5, params))
    assert len(wf["folds"]) == len(obj.folds) == 2
    assert [r["test_start"] for r in wf["folds"]] == list(obj.fold_table.test_start)
    assert value == pytest.approx(np.mean([r[f"{model}_rank_ic"] for r in wf["folds"]]), abs=1e-12)
    # and from the predictions with plain pandas: Spearman per date, mean per fold, mean over folds
    p = wf["predictions"][5][model]
    df = pd.DataFrame({"p": p, "y": labels["excess_5"].reindex(p.index)})
    daily = df.groupby(level=0).apply(lambda g: g["p"].corr(g["y"], method="spearman"))
    fold_means = [daily[(daily.index >= r["test_start"]) & (daily.index <= r["test_end"])].mean() for r in wf["folds"]]
    assert value == pytest.approx(np.mean(fold_means), abs=1e-10)
    assert abs(value) < 0.15   # GUIDE: higher out-of-sample RankIC means leakage


def test_holdout_is_never_seen_by_the_search(data, obj):
    bars, sec, feats, labels = data
    uniq = np.unique(feats.index.get_level_values(0))
    hold = uniq[-HOLD:]
    assert obj.holdout_start == hold[0]
    for tr, te in obj.folds:
        used = np.union1d(obj.dates[tr], obj.dates[te])
        assert used.max() < hold[0]
    # the last search label (search_end + 5 bars) ends before the holdout's first date
    assert np.searchsorted(uniq, obj.search_end) + 5 < np.searchsorted(uniq, hold[0])
    # probe: scramble every price from the holdout on; the search objective must not move
    bent = bars.copy()
    late = bent["date"].to_numpy() >= hold[0]
    k = np.random.default_rng(0).uniform(0.5, 1.5, late.sum())
    for c in ("open", "high", "low", "close"):
        bent.loc[late, c] = bent.loc[late, c] * k
    obj2 = WalkForwardObjective(compute_features(bent, None, sec), make_labels(bent, (1, 5, 10, 20)), tiny_cfg(), "lgbm", 5,
                                holdout_days=HOLD)
    assert obj2(FixedTrial(PARAMS)) == obj(FixedTrial(PARAMS))
    a, b = obj.holdout_ic(PARAMS), obj2.holdout_ic(PARAMS)
    assert not np.allclose(a.to_numpy(), b.to_numpy())   # the scramble did reach the holdout


def test_each_fold_is_reported_and_bad_trials_are_pruned(obj, monkeypatch):
    good = obj.fold_score
    monkeypatch.setattr(obj, "fold_score", lambda p, i: -1.0 if p["learning_rate"] < 0.0101 else good(p, i))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    defaults = default_params("lgbm", obj.cfg)
    study.enqueue_trial(defaults)
    study.enqueue_trial({**defaults, "learning_rate": 0.01})   # the "bad region"
    study.optimize(obj, n_trials=2)
    t0, t1 = study.trials
    assert t0.state == TrialState.COMPLETE and sorted(t0.intermediate_values) == [0, 1]
    ics = t0.user_attrs["fold_rank_ic"]
    assert [t0.intermediate_values[i] for i in (0, 1)] == pytest.approx([ics[0], np.mean(ics)])
    assert t0.value == pytest.approx(np.mean(ics))
    assert t1.state == TrialState.PRUNED and t1.intermediate_values == {0: -1.0}


def test_cli_study_persists_resumes_and_checks_its_setup(tmp_path):
    out = tmp_path / "hpo"
    runner = CliRunner()
    args = ["hpo", "--bars", str(BARS), "--out", str(out), "--model", "lgbm", "--minutes", "5", *SMALL]
    r = runner.invoke(app, [*args, "--trials", "3"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert r.output.count("trial ") >= 3 and "(defaults)" in r.output
    doc = json.loads((out / "best_params.json").read_text())
    assert doc["model"] == "lgbm" and doc["horizon"] == 5 and doc["n_trials"] == 3
    assert set(doc["model_params"]["lgbm"]) == set(lgbm_space())
    assert doc["n_complete"] + doc["n_pruned"] == 3 and doc["n_search_folds"] == 2
    assert all(isinstance(doc[k], float) for k in ("best_value", "holdout_rank_ic", "holdout_rank_ic_default"))
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials.number) == [0, 1, 2] and trials.defaults.tolist() == [True, False, False]
    assert trials.loc[0, "params_learning_rate"] == 0.03   # trial 0 = the library defaults
    assert doc["best_value"] == pytest.approx(trials.value.max())
    assert "holdout RankIC" in (out / "hpo.md").read_text()
    storage = f"sqlite:///{out / 'study.db'}"
    assert len(optuna.load_study(study_name="technic-lgbm-h5", storage=storage).trials) == 3

    r = runner.invoke(app, [*args, "--trials", "2"])        # same study: resumes
    assert r.exit_code == 0, (r.output, r.exception)
    study = optuna.load_study(study_name="technic-lgbm-h5", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert sum(bool(t.user_attrs.get("defaults")) for t in study.trials) == 1   # defaults not re-enqueued
    assert json.loads((out / "best_params.json").read_text())["n_trials"] == 5

    r = runner.invoke(app, [*args[:-len(SMALL)], *SMALL[:4], "--holdout-days", "90", *SMALL[6:], "--trials", "1"])
    assert isinstance(r.exception, TechnicError) and "holdout_days" in str(r.exception)


@pytest.mark.parametrize("extra, msg", [
    (["--model", "rf"], "unknown model 'rf'"),
    (["--end", "2014-12-31"], "too few dates for a search fold plus the holdout"),
])
def test_cli_bad_input_is_a_technic_error(tmp_path, extra, msg):
    r = CliRunner().invoke(app, ["hpo", "--bars", str(BARS), "--out", str(tmp_path / "o"), "--threads", "1", *extra])
    assert isinstance(r.exception, TechnicError), r.output
    assert msg in str(r.exception)


def test_cached_feature_selection_gives_the_same_value_as_a_fresh_objective(data, obj):
    """Trials reuse each fold's selected features (they do not depend on the model's parameters)."""
    _, _, feats, labels = data
    other = {**PARAMS, "num_leaves": 7, "learning_rate": 0.05}
    obj(FixedTrial(PARAMS))                         # fills the cache
    assert len(obj._selected) >= len(obj.folds)
    cached = obj(FixedTrial(other))
    fresh = WalkForwardObjective(feats, labels, tiny_cfg(), "lgbm", 5, holdout_days=HOLD)
    assert cached == fresh(FixedTrial(other))
