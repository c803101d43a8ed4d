"""Fundamentals and securities loaders against an independent csv-module oracle."""

from __future__ import annotations

import csv
import gzip
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data.fundamentals import (FUNDAMENTAL_FIELDS, SOURCE_COLUMNS, derive_growth,
                                       load_fundamentals)
from technic.data.securities import load_securities, sector_map
from technic.errors import DataError

FIX = Path(__file__).resolve().parent / "fixtures"
FUND = FIX / "fundamentals_small.csv"
SECS = FIX / "securities_small.csv"


def data_dir() -> Path:
    env = os.environ.get("TECHNIC_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def oracle(path=FUND, lag=90):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    num = lambda x: float(x) if x not in ("", None) else math.nan  # noqa: E731
    out = {}
    for r in rows:
        pe = pd.Timestamp(r["Period Ending"])
        rec = {k: num(r[c]) for k, c in SOURCE_COLUMNS.items()}
        if math.isnan(rec["shares"]) and rec["eps"] not in (0.0,) and not math.isnan(rec["eps"]):
            rec["shares"] = rec["net_income"] / rec["eps"]
        rec["available_from"] = pe + pd.Timedelta(days=lag)
        out[(r["Ticker Symbol"], pe)] = rec  # last one wins
    # growth by a per-symbol loop
    for sym in {k[0] for k in out}:
        keys = sorted(k for k in out if k[0] == sym)
        for i, k in enumerate(keys):
            for g, base in (("revenue_growth", "total_revenue"), ("earnings_growth", "net_income"),
                            ("asset_growth", "total_assets")):
                if i == 0:
                    out[k][g] = math.nan
                    continue
                prev, cur = out[keys[i - 1]][base], out[k][base]
                out[k][g] = (cur - prev) / abs(prev) if prev not in (0.0,) and not math.isnan(prev) else math.nan
    return out


def test_matches_oracle():
    # the parse, share counts as reported (the split adjustment is tested in test_split_adjustment.py)
    f = load_fundamentals(FUND, adjust_splits=False)
    assert list(f.columns) == ["symbol", "period_end", "available_from", *FUNDAMENTAL_FIELDS]
    assert str(f["period_end"].dtype) == "datetime64[ns]" and str(f["available_from"].dtype) == "datetime64[ns]"
    assert all(str(f[c].dtype) == "float64" for c in FUNDAMENTAL_FIELDS)
    exp = oracle()
    assert len(f) == len(exp) == 39
    for r in f.itertuples(index=False):
        e = exp[(r.symbol, r.period_end)]
        assert r.available_from == e["available_from"]
        for k in FUNDAMENTAL_FIELDS:
            a, b = getattr(r, k), e[k]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12), (r.symbol, k)
    assert f.attrs["warnings"] == [] and f.attrs["duplicates_dropped"] == 0
    aal = f[f["symbol"] == "AAL"].iloc[0]
    assert aal["capex"] < 0 and aal["net_income"] == -1876000000.0


def test_lag_and_publish_date(tmp_path):
    f = load_fundamentals(FUND, lag_days=30)
    assert ((f["available_from"] - f["period_end"]) == pd.Timedelta(days=30)).all()
    raw = pd.read_csv(FUND, dtype=str)
    raw["Filing Date"] = (pd.to_datetime(raw["Period Ending"]) + pd.Timedelta(days=45)).dt.strftime("%Y-%m-%d")
    raw.loc[0, "Filing Date"] = ""  # blank -> lag rule
    p = tmp_path / "f.csv"
    raw.to_csv(p, index=False)
    g = load_fundamentals(p)
    lag = (g["available_from"] - g["period_end"]).dt.days
    assert sorted(lag.unique()) == [45, 90] and (lag == 90).sum() == 1
    with pytest.raises(DataError, match="lag_days"):
        load_fundamentals(FUND, lag_days=-1)


def test_shares_fallback_duplicates_and_warnings(tmp_path):
    raw = pd.read_csv(FUND, dtype=str)
    raw.loc[0, "Estimated Shares Outstanding"] = ""
    raw.loc[1, ["Estimated Shares Outstanding", "Earnings Per Share"]] = ["", "0"]
    dup = raw.iloc[[2]].copy()
    dup["Net Income"] = "123"
    raw.loc[3, "Period Ending"] = "1985-12-31"
    raw = pd.concat([raw, dup], ignore_index=True)
    p = tmp_path / "f.csv"
    raw.to_csv(p, index=False)
    f = load_fundamentals(p)
    r0 = f[(f["symbol"] == raw.loc[0, "Ticker Symbol"]) & (f["period_end"] == raw.loc[0, "Period Ending"])].iloc[0]
    assert r0["shares"] == pytest.approx(r0["net_income"] / r0["eps"])
    r1 = f[(f["symbol"] == raw.loc[1, "Ticker Symbol"]) & (f["period_end"] == raw.loc[1, "Period Ending"])].iloc[0]
    assert math.isnan(r1["shares"])
    assert f.attrs["duplicates_dropped"] == 1
    r2 = f[(f["symbol"] == dup["Ticker Symbol"].iloc[0]) & (f["period_end"] == dup["Period Ending"].iloc[0])]
    assert len(r2) == 1 and r2["net_income"].iloc[0] == 123.0  # last wins
    w = f.attrs["warnings"]
    assert any("row 4" in x and "duplicate" in x for x in w)  # first copy (line 4) superseded
    assert any("row 5" in x and "1985-12-31" in x and "implausible" in x for x in w)
    assert len(f) == 39


@pytest.mark.parametrize("col,value,msg", [
    ("Period Ending", "", "f.csv: row 7, column 'Period Ending': missing date"),
    ("Period Ending", "31/31/2015", "f.csv: row 7, column 'Period Ending': cannot parse '31/31/2015' as a date"),
    ("Net Income", "12a", "f.csv: row 7, column 'Net Income': cannot parse '12a' as a number"),
    ("Ticker Symbol", "", "f.csv: row 7, column 'Ticker Symbol': missing symbol"),
])
def test_bad_input_messages(tmp_path, col, value, msg):
    raw = pd.read_csv(FUND, dtype=str)
    raw.loc[5, col] = value
    p = tmp_path / "f.csv"
    raw.to_csv(p, index=False)
    with pytest.raises(DataError) as ei:
        load_fundamentals(p)
    assert str(ei.value) == msg


def test_missing_required_column(tmp_path):
    raw = pd.read_csv(FUND, dtype=str).drop(columns=["Period Ending"])
    raw.to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(DataError, match=r"f.csv: missing required column\(s\) 'Period Ending'"):
        load_fundamentals(tmp_path / "f.csv")


def test_derive_growth_preserves_order():
    df = pd.DataFrame({"symbol": ["B", "A", "A", "B"],
                       "period_end": pd.to_datetime(["2015-12-31", "2015-12-31", "2014-12-31", "2014-12-31"]),
                       "total_revenue": [30.0, 12.0, 10.0, -20.0],
                       "net_income": [1.0, -2.0, 0.0, -4.0],
                       "total_assets": [5.0, np.nan, 4.0, 4.0]})
    g = derive_growth(df)
    assert list(g.index) == list(df.index)
    np.testing.assert_allclose(g["revenue_growth"], [50 / 20, 0.2, np.nan, np.nan])
    np.testing.assert_allclose(g["earnings_growth"], [5 / 4, np.nan, np.nan, np.nan])  # prev 0 -> NaN
    np.testing.assert_allclose(g["asset_growth"], [0.25, np.nan, np.nan, np.nan])


def test_securities():
    s = load_securities(SECS)
    assert list(s.columns) == ["symbol", "name", "sector", "sub_industry"]
    with open(SECS, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(s) == len(rows)
    m = sector_map(s)
    assert m == {r["Ticker symbol"]: r["GICS Sector"] for r in rows}
    assert m["AAPL"] == "Information Technology"


def test_securities_errors(tmp_path):
    p = tmp_path / "sec.csv"
    p.write_text('"Ticker symbol","Security","GICS Sector"\n"A","Agilent","Health Care"\n')
    with pytest.raises(DataError, match=r"sec.csv: missing required column\(s\) 'GICS Sub Industry'"):
        load_securities(p)
    p.write_text('"Ticker symbol","Security","GICS Sector","GICS Sub Industry"\n"A","x","y","z"\n"","b","c","d"\n')
    with pytest.raises(DataError, match=r"^sec.csv: row 3, column 'Ticker symbol': missing ticker$"):
        load_securities(p)


@pytest.mark.slow
def test_dev_fundamentals():
    d = data_dir()
    if not (d / "fundamentals.csv.gz").exists():
        pytest.skip("dev data not found")
    f = load_fundamentals(d / "fundamentals.csv.gz")
    assert len(f) == 1781 and f["symbol"].nunique() == 448
    assert f["eps"].isna().sum() == 219
    s = load_securities(d / "securities.csv")
    assert len(s) == 505 and s["sector"].nunique() == 11
