"""Regime / sector variants: base equals a direct walk-forward, paired statistic oracle, decision rule, files, CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from technic.data import clean_bars, load_bars, load_securities, sector_map
from technic.errors import TechnicError
from technic.evaluation import metrics as M
from technic.features.batch import compute_features
from technic.labels import make_labels
from technic.research import BacktestConfig, walk_forward
from technic.variants import KEEP_NW_T, compare_variants, decide, parse_variants, served_model

FIX = Path(__file__).parent / "fixtures"
VARIANTS = ("base", "regime", "sector_neutral")


def small_cfg(**kw):
    base = dict(horizons=(5, 10), models=("lgbm",), test_days=200, min_train_days=250, k_features=8,
                max_train_rows=4000, n_estimators=30, shap_rows=50, n_threads=1, blend=False, null=False,
                selector_params={"sample_rows": 2000, "mi_rows": 500}, model_params={"lgbm": {"min_data_in_leaf": 100}})
    base.update(kw)
    return BacktestConfig(**base)


@pytest.fixture(scope="module")
def data():
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz"))
    return bars, load_securities(FIX / "securities_40.csv")


@pytest.fixture(scope="module")
def cmp(data, tmp_path_factory):
    bars, sec = data
    out = tmp_path_factory.mktemp("variants")
    return compare_variants(bars, None, sec, small_cfg(), VARIANTS, out_dir=out), out


def test_base_variant_equals_direct_walk_forward(data, cmp):
    bars, sec = data
    doc, _ = cmp
    cfg = small_cfg()
    feats = compute_features(bars, None, sec)               # independent path: no cache, own labels
    labels = make_labels(bars, cfg.label_horizons, lag=cfg.lag)
    res = walk_forward(feats, labels, cfg)
    for h in cfg.horizons:
        p = res["predictions"][h]["lgbm"]
        direct = M.summarize(p, labels.reindex(p.index), h, cfg.cost_bps)
        got = doc["horizons"][str(h)]["variants"]["base"]
        for k in ("rank_ic_mean", "rank_icir", "rank_ic_nw_tstat", "sharpe_net", "n_days"):
            assert got[k] == pytest.approx(direct[k], rel=1e-12, abs=1e-15), (h, k)
        idx = {v: doc["_results"][h][v]["pred"].index for v in VARIANTS}
        assert all(i.equals(idx["base"]) for i in idx.values())          # same folds, same test rows
        # the toggles change the model: a variant identical to base would make the comparison vacuous
        for v in ("regime", "sector_neutral"):
            assert not np.allclose(doc["_results"][h][v]["pred"].to_numpy(), p.to_numpy())
    assert doc["meta"]["served_model"] == "lgbm" and doc["meta"]["primary_horizon"] == 5


def _pandas_rank_ic(pred: pd.Series, excess: pd.Series) -> pd.Series:
    df = pd.DataFrame({"p": pred, "y": excess}).dropna()
    g = df.groupby(level=0)
    ic = g.apply(lambda x: x["p"].corr(x["y"], method="spearman"))
    return ic[g.size() >= M.MIN_NAMES].dropna()


def _nw_t(d: pd.Series, lags: int) -> float:
    e = d - d.mean()
    n = len(e)
    s = (e * e).sum() / n + sum(2 * (1 - k / (lags + 1)) * (e * e.shift(k)).sum() / n for k in range(1, lags + 1))
    return float(d.mean() / np.sqrt(s / n))


def test_paired_difference_matches_independent_pandas(cmp):
    doc, _ = cmp
    for h in (5, 10):
        r = doc["_results"][h]
        exc = r["base"]["labels"][f"excess_{h}"]
        base = _pandas_rank_ic(r["base"]["pred"], exc)
        for v in ("regime", "sector_neutral"):
            diff = (_pandas_rank_ic(r[v]["pred"], exc) - base).dropna()
            vs = doc["horizons"][str(h)]["variants"][v]["vs_base"]
            assert vs["n_days"] == len(diff) > 100
            assert vs["mean_diff"] == pytest.approx(diff.mean(), abs=1e-12)
            assert vs["nw_tstat"] == pytest.approx(_nw_t(diff, h - 1), rel=1e-9)
            assert vs["share_days_better"] == pytest.approx((diff > 0).mean())


def _doc(primary: dict, other: dict) -> dict:
    """Synthetic doc: horizon 5 primary; per variant (t on h5, mean diff on h10)."""
    def hz(vals):
        return {"variants": {"base": {"vs_base": None},
                             **{n: {"vs_base": {"mean_diff": m, "nw_tstat": t}} for n, (m, t) in vals.items()}},
                "baselines": {}}
    return {"meta": {"primary_horizon": 5}, "horizons": {"5": hz(primary), "10": hz(other)}}


def test_decision_rule_on_synthetic_doc():
    doc = _doc(primary={"good": (0.004, 2.5), "edge": (0.003, KEEP_NW_T), "weak": (0.004, 1.99),
                        "worse_elsewhere": (0.005, 3.0), "flat_elsewhere": (0.002, 2.1), "nan_t": (0.01, None),
                        "negative": (-0.004, -2.5)},
               other={"good": (0.001, 0.5), "edge": (0.0, 0.0), "weak": (0.002, 1.0),
                      "worse_elsewhere": (-0.0001, -0.1), "flat_elsewhere": (0.0, 0.0), "nan_t": (0.01, 1.0),
                      "negative": (0.01, 1.0)})
    d = decide(doc)
    assert doc["decisions"] is d and "base" not in d
    assert {n for n, e in d.items() if e["kept"]} == {"good", "edge", "flat_elsewhere"}
    assert "NW t 1.99 < 2" in d["weak"]["reason"]
    assert "h10" in d["worse_elsewhere"]["reason"] and "h5" not in d["worse_elsewhere"]["reason"]
    assert "n/a" in d["nan_t"]["reason"]


def test_files_written_and_consistent(cmp):
    doc, out = cmp
    j = json.loads((out / "comparison.json").read_text())
    assert "_results" not in j and set(j["horizons"]) == {"5", "10"}
    assert j["decisions"] == doc["decisions"] and set(j["decisions"]) == {"regime", "sector_neutral"}
    assert j["horizons"]["5"]["variants"]["regime"]["vs_base"]["mean_diff"] == pytest.approx(
        doc["horizons"]["5"]["variants"]["regime"]["vs_base"]["mean_diff"])
    assert set(j["horizons"]["5"]["baselines"]) == {"momentum_12_1", "reversal_5"}
    md = (out / "comparison.md").read_text()
    assert "| variant | rank_ic_mean" in md and "| sector_neutral |" in md and "Decision rule" in md
    page = (out / "comparison.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "http" not in page
    for n, e in doc["decisions"].items():
        assert f"**{n}**: {'kept' if e['kept'] else 'not kept'}" in md


def test_served_model_and_variant_names():
    assert served_model(small_cfg(models=("lgbm", "xgb", "stack"))) == "stack"
    assert served_model(small_cfg(models=("lgbm", "xgb", "stack"), blend=True)) == "blend"
    assert served_model(small_cfg(models=("lgbm", "xgb"))) == "ensemble"
    assert served_model(small_cfg(models=("xgb",))) == "xgb"
    assert parse_variants("regime") == ("base", "regime")
    with pytest.raises(TechnicError, match="unknown variant"):
        parse_variants("base,regimes")


def test_sector_neutral_without_sectors_is_a_clear_error(data, tmp_path):
    bars, _ = data
    with pytest.raises(TechnicError, match="need sectors"):
        compare_variants(bars, None, None, small_cfg(), ("base", "sector_neutral"), out_dir=tmp_path)
    from technic.cli import app
    r = CliRunner().invoke(app, ["compare-variants", "--bars", str(FIX / "bars_40x2y.csv.gz"), "--out",
                                 str(tmp_path / "o"), "--variants", "base,regime+sector_neutral"])
    assert r.exit_code != 0 and isinstance(r.exception, TechnicError), r.output
    assert "--securities" in str(r.exception) and "regime+sector_neutral" in str(r.exception)
    assert not (tmp_path / "o").exists()                                  # refused before any work
    assert sector_map(load_securities(FIX / "securities_40.csv"))          # the fixture does carry sectors
