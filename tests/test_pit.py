"""Point-in-time joins against brute-force loops; nothing sees the future; alt-data loader."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data.alt import ALT_FIELDS, load_alt, make_synthetic_alt
from technic.data.bars import load_bars
from technic.data.fundamentals import FUNDAMENTAL_FIELDS, load_fundamentals
from technic.data.pit import asof_alt, asof_fundamentals
from technic.errors import DataError

FIX = Path(__file__).resolve().parent / "fixtures"
FIELDS = ["net_income", "total_revenue", "eps", "revenue_growth"]


def data_dir() -> Path:
    env = os.environ.get("TECHNIC_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def bars_over_years() -> pd.DataFrame:
    """Month-end bars 2013-2017 for the fixture symbols (spans several filings)."""
    dates = pd.date_range("2012-06-30", "2017-12-31", freq="ME")
    syms = ["AAL", "AAPL", "COTY", "LNT", "UA", "NOFUND"]
    b = pd.DataFrame([(d, s) for d in dates for s in syms], columns=["date", "symbol"])
    b["close"] = 1.0
    return b.sample(frac=1.0, random_state=0)  # any order and index: output must align


def brute_fund(bars, fund, fields):
    out = []
    for d, s in zip(bars["date"], bars["symbol"]):
        best = None
        for r in fund.itertuples(index=False):
            if r.symbol == s and r.available_from <= d:
                if best is None or (r.available_from, r.period_end) > (best.available_from, best.period_end):
                    best = r
        out.append([getattr(best, f) if best is not None else math.nan for f in fields])
    return pd.DataFrame(out, index=bars.index, columns=fields)


def test_asof_fundamentals_matches_brute_force():
    bars = bars_over_years()
    fund = load_fundamentals(FIX / "fundamentals_small.csv")
    got = asof_fundamentals(bars, fund, fields=FIELDS)
    pd.testing.assert_frame_equal(got, brute_fund(bars, fund, FIELDS))
    assert got.loc[bars["symbol"] == "NOFUND"].isna().all().all()
    full = asof_fundamentals(bars, fund)
    assert list(full.columns) == list(FUNDAMENTAL_FIELDS) and full.index.equals(bars.index)


def test_same_available_from_latest_period_wins():
    fund = pd.DataFrame({
        "symbol": ["X", "X", "X"],
        "period_end": pd.to_datetime(["2015-12-31", "2014-12-31", "2013-12-31"]),
        "available_from": pd.to_datetime(["2016-03-01", "2016-03-01", "2014-03-01"]),
        "eps": [3.0, 2.0, 1.0],
    })
    bars = pd.DataFrame({"date": pd.to_datetime(["2014-02-28", "2014-03-01", "2016-02-29", "2016-03-01"]),
                         "symbol": "X"}, index=[10, 11, 12, 13])
    got = asof_fundamentals(bars, fund, fields=["eps", "cash"])
    np.testing.assert_array_equal(got["eps"].to_numpy(), [np.nan, 1.0, 1.0, 3.0])
    assert got["cash"].isna().all()  # a field absent from the frame -> NaN
    assert list(got.index) == [10, 11, 12, 13]


def test_nothing_sees_the_future():
    bars = bars_over_years()
    fund = load_fundamentals(FIX / "fundamentals_small.csv")
    cut = pd.Timestamp("2015-06-30")
    base = asof_fundamentals(bars, fund, fields=FIELDS)
    rng = np.random.default_rng(0)
    future = fund["available_from"] > cut
    perturbed = fund.copy()
    perturbed.loc[future, FIELDS] = rng.normal(size=(future.sum(), len(FIELDS))) * 1e9
    # also move future rows around in time (still after the cut) and shuffle row order
    perturbed.loc[future, "available_from"] = cut + pd.to_timedelta(rng.integers(1, 400, future.sum()), unit="D")
    perturbed = perturbed.sample(frac=1.0, random_state=3)
    after = asof_fundamentals(bars, perturbed, fields=FIELDS)
    early = bars["date"] <= cut
    pd.testing.assert_frame_equal(after[early], base[early])
    assert not after[~early].equals(base[~early])  # the perturbation did reach later bars
    # strictly never a row with available_from > date
    dropped = asof_fundamentals(bars, fund[~future], fields=FIELDS)
    pd.testing.assert_frame_equal(dropped[early], base[early])


def brute_alt(bars, alt, fields):
    out = pd.DataFrame(np.nan, index=bars.index, columns=list(fields))
    for idx, d, s in zip(bars.index, bars["date"], bars["symbol"]):
        for f in fields:
            best = None
            for r in alt.itertuples(index=False):  # file order: later duplicate wins
                if r.symbol == s and r.field == f and r.date <= d and not math.isnan(r.value):
                    if best is None or r.date >= best.date:
                        best = r
            if best is not None:
                out.loc[idx, f] = best.value
    return out


def test_asof_alt_matches_brute_force():
    bars = load_bars(FIX / "bars_small.csv", symbols=["AAPL", "UA", "LNT"])
    alt = make_synthetic_alt(bars[bars["symbol"] != "LNT"], seed=1)
    alt = alt[alt.index % 3 != 0].reset_index(drop=True)  # holes -> forward fill
    alt.loc[5, "value"] = np.nan
    extra = pd.DataFrame({"date": [bars["date"].iloc[0]], "symbol": ["AAPL"], "field": ["news_count"],
                          "value": [77.0]})
    alt = pd.concat([alt, extra], ignore_index=True)  # duplicate of an existing record: later wins
    small = bars.iloc[::4]
    got = asof_alt(small, alt)
    exp = brute_alt(small, alt, ALT_FIELDS)
    pd.testing.assert_frame_equal(got, exp)
    assert got.loc[small["symbol"] == "LNT"].isna().all().all()


def test_synthetic_alt_is_deterministic_and_labelled():
    bars = load_bars(FIX / "bars_small.csv")
    a, b = make_synthetic_alt(bars, seed=0), make_synthetic_alt(bars, seed=0)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["synthetic"] is True and "SYNTHETIC" in a.attrs["warnings"][0]
    assert set(a["field"]) == set(ALT_FIELDS)
    assert a.loc[a["field"] == "sentiment", "value"].between(-1, 1).all()
    assert (a.loc[a["field"] == "news_count", "value"] >= 0).all()


def test_load_alt_roundtrip_and_errors(tmp_path):
    bars = load_bars(FIX / "bars_small.csv", symbols=2)
    a = make_synthetic_alt(bars, seed=2)
    p = tmp_path / "alt.csv"
    a.to_csv(p, index=False)
    got = load_alt(p)
    pd.testing.assert_frame_equal(got, a, check_like=False, check_exact=False, rtol=1e-12)
    assert got.attrs["warnings"] == []
    pq = tmp_path / "alt.parquet"
    a.assign(field=np.where(a["field"] == "news_count", "buzz", a["field"])).to_parquet(pq, index=False)
    w = load_alt(pq).attrs["warnings"]
    assert len(w) == 1 and "buzz" in w[0]
    lines = p.read_text().splitlines()
    lines[3] = "2016-04-01,AAPL,sentiment,1.5"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"^alt.csv: row 4, column 'value': sentiment = 1.5 outside \[-1.0, 1.0\]"):
        load_alt(p)
    lines[3] = "2016-04-01,AAPL,sentiment,good"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"^alt.csv: row 4, column 'value': cannot parse 'good' as a number$"):
        load_alt(p)
    (tmp_path / "x.csv").write_text("date,symbol,value\n")
    with pytest.raises(DataError, match=r"x.csv: missing required column\(s\) 'field'"):
        load_alt(tmp_path / "x.csv")


@pytest.mark.slow
def test_full_dev_asof_is_fast():
    d = data_dir()
    if not (d / "all_stocks_5yr.csv.gz").exists():
        pytest.skip("dev data not found")
    bars = load_bars(d / "all_stocks_5yr.csv.gz")
    fund = load_fundamentals(d / "fundamentals.csv.gz")
    t = time.perf_counter()
    j = asof_fundamentals(bars, fund)
    assert time.perf_counter() - t < 5
    assert j.index.equals(bars.index)
    # first bars (2013-02-08) only see rows with available_from <= that date
    first = bars["date"] == bars["date"].min()
    known = set(fund.loc[fund["available_from"] <= bars["date"].min(), "symbol"])
    assert set(bars.loc[first & j["net_income"].notna(), "symbol"]) == known & set(bars.loc[first, "symbol"])
