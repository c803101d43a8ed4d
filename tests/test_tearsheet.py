"""Tear sheet writes valid JSON (NaN -> null) and a self-contained HTML report."""

import json

import numpy as np
import pandas as pd

from technic.evaluation import metrics as M
from technic.evaluation.tearsheet import SUMMARY_COLUMNS, to_jsonable, write_tearsheet


def synthetic(n_dates=320, n_sym=40, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2017-11-01", periods=n_dates)
    idx = pd.MultiIndex.from_product([dates, [f"S{i:02d}" for i in range(n_sym)]], names=["date", "symbol"])
    f = rng.normal(size=len(idx))
    fwd = pd.Series((0.1 * f + rng.normal(size=len(idx))) * 0.02, idx)
    labels = pd.DataFrame({"fwd_ret_5": fwd, "excess_5": fwd - fwd.groupby(level=0).transform("median")})
    labels.iloc[-5 * n_sym:] = np.nan  # the last h dates have no label yet
    return pd.Series(f, idx), labels, rng


def test_write_tearsheet(tmp_path):
    pred, labels, rng = synthetic()
    sectors = {f"S{i:02d}": ["Tech", "Energy", "Health"][i % 3] for i in range(40)}
    precomputed = {k: float("nan") for k in SUMMARY_COLUMNS}  # NaN must become null
    results = {
        "meta": {"cost_bps": 10, "universe": "synthetic", "folds": 3},
        "sectors": sectors,
        "horizons": {5: {
            "labels": labels,
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
    assert set(h5["models"]["lgbm"]["breakdown"]["year"]) == {"2017", "2018", "2019"}
    assert "NaN" not in paths["metrics"].read_text()

    page = paths["report"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "Synthetic &lt;test&gt;" in page
    for section in ("Summary", "Information coefficient", "Decile returns", "Long-short net of costs",
                    "By year", "By sector", "Feature importance", "momentum_12_1 (baseline)"):
        assert section in page, section
    # 2 models x (IC, deciles, equity, turnover) + 1 importance chart
    assert page.count("<img") == 9
    assert page.count("data:image/png;base64,") == 9
    assert "http://" not in page and "https://" not in page


def test_to_jsonable():
    obj = {1: np.float64("nan"), "b": [np.int64(3), float("inf"), pd.Timestamp("2020-01-02")], "c": True, "d": pd.NaT}
    assert to_jsonable(obj) == {"1": None, "b": [3, None, "2020-01-02T00:00:00"], "c": True, "d": None}
    json.dumps(to_jsonable(obj), allow_nan=False)
