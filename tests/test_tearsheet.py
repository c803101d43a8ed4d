"""Tear sheet writes valid JSON (NaN -> null) and a self-contained HTML report."""

import json

import numpy as np
import pandas as pd
import pytest

from technic.evaluation import metrics as M
from technic.evaluation import diagnostics as D
from technic.evaluation.tearsheet import SUMMARY_COLUMNS, diagnostics_html, to_jsonable, write_tearsheet


def synthetic(n_dates=320, n_sym=40, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2017-11-01", periods=n_dates)
    idx = pd.MultiIndex.from_product([dates, [f"S{i:02d}" for i in range(n_sym)]], names=["date", "symbol"])
    f = rng.normal(size=len(idx))
    fwd = pd.Series((0.1 * f + rng.normal(size=len(idx))) * 0.02, idx)
    labels = pd.DataFrame({"fwd_ret_5": fwd, "excess_5": fwd - fwd.groupby(level=0).transform("median")})
    labels.iloc[-5 * n_sym:] = np.nan  # the last h dates have no label yet
    return pd.Series(f, idx), labels, rng


def decay_labels(labels):
    """Labels of horizons 1, 5, 10 built from excess_5 (their values do not matter here)."""
    exc = labels["excess_5"]
    return {1: exc / 5, 5: exc, 10: exc + exc.groupby(level=1).shift(-5)}


def test_write_tearsheet(tmp_path):
    pred, labels, rng = synthetic()
    sectors = {f"S{i:02d}": ["Tech", "Energy", "Health"][i % 3] for i in range(40)}
    precomputed = {k: float("nan") for k in SUMMARY_COLUMNS}  # NaN must become null
    results = {
        "meta": {"cost_bps": 10, "universe": "synthetic", "folds": 3},
        "sectors": sectors,
        "horizons": {5: {
            "labels": labels,
            "decay_labels": decay_labels(labels),
            "models": {"lgbm": {"pred": pred, "importance": {"mom_12_1": 0.4, "rev_5": -0.2, "vol_20": 0.1}},
                       "noise": {"pred": pd.Series(rng.normal(size=len(pred)), pred.index)}},
            "baselines": {"momentum_12_1": {"pred": pred * 0.5 + rng.normal(size=len(pred))},
                          "equal_weight": {"metrics": precomputed}},
        }},
    }
    paths = write_tearsheet(tmp_path / "out", results, "Synthetic <test>")
    doc = json.loads(paths["metrics"].read_text())
    h5 = doc["horizons"]["5"]
    assert set(h5["models"]) == {"lgbm", "noise"}
    assert set(h5["baselines"]) == {"momentum_12_1", "equal_weight"}
    m = h5["models"]["lgbm"]["metrics"]
    assert set(SUMMARY_COLUMNS) <= set(m)
    assert m["rank_ic_mean"] == M.summarize(pred, labels, 5)["rank_ic_mean"]
    assert h5["baselines"]["equal_weight"]["metrics"]["rank_ic_mean"] is None
    assert set(h5["models"]["lgbm"]["breakdown"]["sector"]) == {"Tech", "Energy", "Health"}
    years = h5["models"]["lgbm"]["breakdown"]["year"]
    assert set(years) == {"2017", "2018", "2019"}
    # 2017-11-01 .. 2019-01-23 (labels to 2019-01-16): only 2018 is covered from end to end
    assert {y: r["partial"] for y, r in years.items()} == {"2017": True, "2018": False, "2019": True}
    assert "NaN" not in paths["metrics"].read_text()
    # new keys: IC decay, rank autocorrelation, tie share (models and baselines with a pred)
    lg = h5["models"]["lgbm"]
    assert list(lg["ic_decay"]) == ["1", "5", "10"]
    assert lg["ic_decay"]["5"]["rank_ic_mean"] == pytest.approx(m["rank_ic_mean"])
    assert lg["ic_decay"]["10"]["nw_lags"] == 9
    assert lg["rank_autocorr"] == pytest.approx(D.rank_autocorrelation(pred)[1])
    assert lg["tie_share_mean"] == 0.0
    assert abs(h5["baselines"]["momentum_12_1"]["rank_autocorr"]) < 0.1  # i.i.d. across dates
    assert "ic_decay" in h5["baselines"]["momentum_12_1"]
    no_pred = h5["baselines"]["equal_weight"]
    assert no_pred["tie_share_mean"] is None and "ic_decay" not in no_pred

    page = paths["report"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "Synthetic &lt;test&gt;" in page
    for section in ("Summary", "Information coefficient", "Decile returns", "Long-short net of costs",
                    "By year", "By sector", "Feature importance", "momentum_12_1 (baseline)",
                    "RankIC distribution", "Cumulative return per decile", "Top-minus-bottom spread",
                    "Signal rank autocorrelation", "IC decay", "2017 (partial)", "2019 (partial)",
                    "tie_share_mean"):
        assert section in page, section
    assert "2018 (partial)" not in page
    # 2 models x (IC, deciles, equity, turnover, IC histogram, monthly heat map, quantile curves,
    # spread, rank autocorrelation, IC decay) + 1 importance chart
    assert page.count("<img") == 21
    assert page.count("data:image/png;base64,") == 21
    assert "http://" not in page and "https://" not in page


def test_diagnostics_html_alone_and_without_decay_labels():
    pred, labels, rng = synthetic(n_dates=120, n_sym=25)
    base = {"reversal_5": {"pred": pd.Series(rng.normal(size=len(pred)), pred.index)}}
    with_decay = diagnostics_html("m", pred, labels, 5, 10.0, decay_labels(labels), base)
    assert with_decay.count("<img") == 6 and "IC decay" in with_decay
    without = diagnostics_html("m", pred, labels, 5, 10.0)
    assert without.count("<img") == 5 and "IC decay" not in without


def test_tied_model_reports_its_tie_share(tmp_path):
    pred, labels, _ = synthetic(n_dates=80, n_sym=30)
    results = {"horizons": {5: {"labels": labels, "models": {"stump": {"pred": (pred > 0).astype(float)}},
                                "baselines": {}}}}
    doc = json.loads(write_tearsheet(tmp_path, results, "t")["metrics"].read_text())
    assert doc["horizons"]["5"]["models"]["stump"]["tie_share_mean"] == 1.0
    assert "ic_decay" not in doc["horizons"]["5"]["models"]["stump"]


def test_too_few_names_gives_notes_not_errors(tmp_path):
    rng = np.random.default_rng(0)
    idx = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=30), ["A", "B", "C"]],
                                     names=["date", "symbol"])
    y = pd.Series(rng.normal(size=len(idx)), idx)
    results = {"horizons": {5: {"labels": pd.DataFrame({"fwd_ret_5": y, "excess_5": y}),
                                "models": {"m": {"pred": pd.Series(rng.normal(size=len(idx)), idx)}},
                                "baselines": {"flat": {"pred": y * 0 + 1}}, "decay_labels": {1: y, 5: y}}}}
    paths = write_tearsheet(tmp_path, results, "t")
    m = json.loads(paths["metrics"].read_text())["horizons"]["5"]["models"]["m"]
    assert m["ic_decay"]["5"]["n_days"] == 0 and m["rank_autocorr"] is None
    assert m["breakdown"]["year"]["2020"]["partial"] is True  # Jan 1 - Feb 11 only
    assert "not enough data" in paths["report"].read_text()


def test_to_jsonable():
    obj = {1: np.float64("nan"), "b": [np.int64(3), float("inf"), pd.Timestamp("2020-01-02")], "c": True, "d": pd.NaT}
    assert to_jsonable(obj) == {"1": None, "b": [3, None, "2020-01-02T00:00:00"], "c": True, "d": None}
    json.dumps(to_jsonable(obj), allow_nan=False)
