"""Share counts and EPS on the bars' price basis: rows adjusted, splits file vs detection,
valuation features continuous across AAPL's and NFLX's 7:1 splits, raw vs adjusted bars.

Oracles are plain pandas on fixtures cut from the dev data (tests/fixtures/*splits*):
bars of AAPL, NFLX, EW, DUK 2013-10-01..2016-06-30 and their fundamentals rows (+ F, FCX).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data import clean_bars, load_bars, load_fundamentals
from technic.data.split_adjustment import split_consistent
from technic.data.splits import load_splits, validate_splits
from technic.errors import TechnicError
from technic.features.batch import compute_features
from technic.features.parity import incremental_features

FIX = Path(__file__).resolve().parent / "fixtures"
FUND = FIX / "fundamentals_splits.csv"
SPLITS = FIX / "splits_small.csv"
SPLIT_DATES = {"AAPL": pd.Timestamp("2014-06-09"), "NFLX": pd.Timestamp("2015-07-15")}
VALUATION = ["earnings_yield", "book_to_price", "sales_to_price", "cashflow_to_price", "fcf_yield",
             "log_market_cap", "ebit_to_ev", "buyback_yield"]


@pytest.fixture(scope="module")
def bars():
    return clean_bars(load_bars(FIX / "bars_splits.csv.gz"))[0]


@pytest.fixture(scope="module")
def reported():
    return load_fundamentals(FUND, adjust_splits=False)


@pytest.fixture(scope="module")
def detected():
    return load_fundamentals(FUND)


@pytest.fixture(scope="module")
def panel(bars, detected):
    return compute_features(bars, detected)


def rows(f, sym):
    return f[f["symbol"] == sym].set_index("period_end").sort_index()


def test_detection_adjusts_rows_before_the_step(reported, detected):
    for sym, ratio, before in (("AAPL", 7, ["2013-09-28"]), ("NFLX", 7, ["2013-12-31", "2014-12-31"]),
                               ("EW", 2, ["2012-12-31", "2013-12-31", "2014-12-31"])):
        r, d = rows(reported, sym), rows(detected, sym)
        factor = pd.Series(np.where(r.index.isin(pd.to_datetime(before)), ratio, 1.0), index=r.index)
        np.testing.assert_allclose(d["shares"], r["shares"] * factor, rtol=1e-15)
        np.testing.assert_allclose(d["eps"], r["eps"] / factor, rtol=1e-15)
        for c in ("net_income", "total_equity", "total_revenue", "earnings_growth"):  # not per share
            np.testing.assert_array_equal(d[c], r[c])
    for sym in ("DUK", "F", "FCX"):  # estimation noise: reported, not adjusted
        pd.testing.assert_frame_equal(rows(detected, sym), rows(reported, sym))
    rep = detected.attrs["split_report"]
    assert {(u["symbol"], u["period_after"]) for u in rep.unexplained} == {
        ("DUK", "2013-12-31"), ("F", "2014-12-31"), ("F", "2015-12-31"), ("FCX", "2014-12-31"),
        ("FCX", "2015-12-31")}


def test_default_load_changes_only_the_split_rows():
    """fundamentals_small.csv holds two real splits (AAPL 7:1 2014-06, UA 2:1 2014-04)."""
    small = FIX / "fundamentals_small.csv"
    r, d = load_fundamentals(small, adjust_splits=False), load_fundamentals(small)
    changed = ~np.isclose(r["shares"], d["shares"], rtol=0, atol=0, equal_nan=True)
    assert r.loc[changed, ["symbol", "period_end"]].astype(str).values.tolist() == [
        ["AAPL", "2013-09-28"], ["UA", "2012-12-31"], ["UA", "2013-12-31"]]
    assert (d.loc[changed, "shares"] / r.loc[changed, "shares"]).tolist() == [7.0, 2.0, 2.0]
    assert r.attrs["split_report"] is None and d.attrs["split_report"].source == "detected from share counts"


def test_splits_file_gives_the_same_result_as_detection(detected):
    by_file = load_fundamentals(FUND, splits=SPLITS)
    for sym in SPLIT_DATES:
        pd.testing.assert_frame_equal(rows(by_file, sym), rows(detected, sym))
    rep = by_file.attrs["split_report"]
    assert [(a["symbol"], a["date"], a["ratio"], a["how"]) for a in rep.applied] == [
        ("AAPL", "2014-06-09", 7.0, "share-count step"), ("NFLX", "2015-07-15", 7.0, "share-count step")]
    # the file is authoritative: EW's step (not listed) is reported, not adjusted
    ew = [u for u in rep.unexplained if u["symbol"] == "EW"]
    assert len(ew) == 1 and "looks like a split of 2" in ew[0]["reason"]
    assert rows(by_file, "EW")["shares"].equals(rows(load_fundamentals(FUND, adjust_splits=False), "EW")["shares"])


def test_listed_split_is_placed_where_the_data_changes_basis(reported, detected):
    """EW split 2:1 on 2016-05-31, but the dev data's 2015 row is already restated."""
    fund = load_fundamentals(FUND, splits=validate_splits(pd.DataFrame(
        {"date": ["2016-05-31", "2014-06-01", "2014-06-01"], "symbol": ["EW", "DUK", "FCX"], "ratio": [2, 2, 3]})))
    pd.testing.assert_frame_equal(rows(fund, "EW"), rows(detected, "EW"))
    how = {a["symbol"]: a["how"] for a in fund.attrs["split_report"].applied}
    assert how == {"EW": "share-count step", "DUK": "already restated", "FCX": "period end"}
    pd.testing.assert_frame_equal(rows(fund, "DUK"), rows(reported, "DUK"))  # same basis on both sides of it
    # FCX's step across 2014-06-01 is noise (x0.43): the data cannot place it, rows ending before move
    fcx, fcx0 = rows(fund, "FCX"), rows(reported, "FCX")
    np.testing.assert_allclose(fcx["shares"], fcx0["shares"] * np.where(fcx.index < "2014-06-01", 3, 1))


def test_reverse_split_by_detection_and_by_file():
    """1-for-4 reverse split on 2015-03-02 between the 2014 and 2015 reports (synthetic rows)."""
    pe = pd.to_datetime(["2012-12-31", "2013-12-31", "2014-12-31", "2015-12-31"])
    ni = np.array([1.0e9, 1.1e9, 1.2e9, 1.25e9])
    shares = np.array([4.1e9, 4.0e9, 3.96e9, 0.98e9])  # pre-split basis before 2015
    raw = pd.DataFrame({"symbol": "RVS", "period_end": pe, "available_from": pe + pd.Timedelta(days=90),
                        "net_income": ni, "eps": ni / shares, "shares": shares})
    det, rep = split_consistent(raw)
    assert [(a["ratio"], a["period_after"]) for a in rep.applied] == [(0.25, "2015-12-31")]
    np.testing.assert_allclose(det["shares"], shares * [0.25, 0.25, 0.25, 1])
    np.testing.assert_allclose(det["eps"], ni / shares * [4, 4, 4, 1])
    splits = validate_splits(pd.DataFrame({"date": ["2015-03-02"], "symbol": ["RVS"], "ratio": ["1/4"]}))
    by_file, _ = split_consistent(raw, splits)
    pd.testing.assert_frame_equal(by_file, det)
    # raw bars: the 2013 report (visible 2014-03-31 .. 2015-03-31) is on the pre-split basis:
    # its count applies as reported until 2015-03-02, then / 4 (a copy visible from the split date)
    rw, _ = split_consistent(raw, splits, price_basis="raw")
    got = rw.set_index(["period_end", "available_from"])["shares"]
    assert got.index.tolist() == [(pe[0], pe[0] + pd.Timedelta(days=90)), (pe[1], pe[1] + pd.Timedelta(days=90)),
                                  (pe[1], pd.Timestamp("2015-03-02")), (pe[2], pe[2] + pd.Timedelta(days=90)),
                                  (pe[3], pe[3] + pd.Timedelta(days=90))]
    np.testing.assert_allclose(got, [shares[0], shares[1], shares[1] / 4, shares[2] / 4, shares[3]])
    np.testing.assert_allclose(rw["eps"] * rw["shares"], rw["net_income"])  # per share moves inversely


def test_errors():
    f = load_fundamentals(FUND, adjust_splits=False)
    with pytest.raises(TechnicError, match="price basis must be one of adjusted, raw, got 'split'"):
        split_consistent(f, price_basis="split")
    with pytest.raises(TechnicError, match="'raw' needs a splits file"):
        split_consistent(f, price_basis="raw")


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------
def step_in_log_shares(panel, sym):
    """log market cap minus log close, day over day = the change of the share count used."""
    p = panel.xs(sym, level="symbol")
    return (p["log_market_cap"] - np.log(p["_close"])).diff().dropna()


@pytest.fixture(scope="module")
def panel_with_close(panel, bars):
    close = bars.set_index(["date", "symbol"])["close"]
    return panel.assign(_close=close.reindex(panel.index).to_numpy())


def test_log_market_cap_is_continuous_across_the_splits(panel_with_close, bars, reported):
    for sym, d in SPLIT_DATES.items():
        step = step_in_log_shares(panel_with_close, sym)
        # at the split date and at each report's availability date, the count moves only by
        # the year's buybacks/issuance (AAPL about -6 %)
        assert step.abs().max() <= np.log(1.1), (sym, step.abs().idxmax(), step.abs().max())
        around = step[(step.index >= d - pd.Timedelta(days=400)) & (step.index <= d + pd.Timedelta(days=400))]
        assert (around != 0).sum() >= 1  # a report became visible within a year of the split
    # the same check fails on the as-reported counts (it would have caught the bug)
    old = compute_features(bars, reported)
    close = bars.set_index(["date", "symbol"])["close"]
    old = old.assign(_close=close.reindex(old.index).to_numpy())
    assert step_in_log_shares(old, "AAPL").abs().max() > np.log(6)
    assert step_in_log_shares(old, "NFLX").abs().max() > np.log(6)


def test_aapl_earnings_yield_2014_is_plausible(panel):
    """AAPL's trailing P/E was about 12-18 in 2014. The low end here, 0.048 in late November,
    is FY2013 earnings (the latest visible) over a price up 60 % since; before the fix E/P was ~0.5."""
    ep = panel.xs("AAPL", level="symbol")["earnings_yield"]
    y2014 = ep[(ep.index >= "2014-01-01") & (ep.index <= "2014-12-31")].dropna()
    assert len(y2014) > 200 and y2014.between(0.045, 0.12).all(), (y2014.min(), y2014.max())
    assert 0.05 <= y2014.median() <= 0.09


def test_valuation_features_match_a_plain_pandas_oracle(panel, bars):
    """Oracle: raw csv rows, shares x 7 for reports ending before the split, visible 90 days
    after period end, joined as of each bar date."""
    raw = pd.read_csv(FUND, index_col=0, parse_dates=["Period Ending"])
    for sym, d in SPLIT_DATES.items():
        r = raw[raw["Ticker Symbol"] == sym].copy()
        r["sh"] = r["Estimated Shares Outstanding"] * np.where(r["Period Ending"] < d, 7.0, 1.0)
        r["avail"] = (r["Period Ending"] + pd.Timedelta(days=90)).astype("datetime64[ns]")
        b = bars[bars["symbol"] == sym].sort_values("date")
        m = pd.merge_asof(b, r.sort_values("avail"), left_on="date", right_on="avail")
        mcap = m["close"] * m["sh"]
        exp = pd.DataFrame({"earnings_yield": m["Net Income"] / mcap, "book_to_price": m["Total Equity"] / mcap,
                            "sales_to_price": m["Total Revenue"] / mcap, "log_market_cap": np.log(mcap)})
        got = panel.xs(sym, level="symbol").reindex(m["date"])
        for c in exp:
            np.testing.assert_allclose(got[c].to_numpy(), exp[c].to_numpy(), rtol=1e-12, equal_nan=True,
                                       err_msg=f"{sym} {c}")


def raw_bars(bars):
    """The fixture's split-adjusted bars turned back into as-traded prices (x7 before each split)."""
    out = bars.copy()
    for sym, d in SPLIT_DATES.items():
        m = ((out["symbol"] == sym) & (out["date"] < d)).to_numpy()
        out.loc[m, ["open", "high", "low", "close"]] *= 7
        out.loc[m, "volume"] /= 7
    return out


def test_raw_bars_with_raw_basis_give_the_same_valuations(panel, bars):
    fund_raw = load_fundamentals(FUND, splits=SPLITS, price_basis="raw")
    assert len(fund_raw) == len(load_fundamentals(FUND)) + 2  # a copy of the visible row at each split
    aapl = fund_raw[fund_raw["symbol"] == "AAPL"].set_index("available_from")["shares"]
    assert aapl[pd.Timestamp("2014-06-09")] == 7 * aapl[pd.Timestamp("2013-12-27")]
    got = compute_features(raw_bars(bars), fund_raw)
    listed = panel.index.get_level_values("symbol").isin(list(SPLIT_DATES))  # EW: detected, not listed
    for c in VALUATION:
        np.testing.assert_allclose(got.loc[listed, c].to_numpy(), panel.loc[listed, c].to_numpy(), rtol=1e-12,
                                   equal_nan=True, err_msg=c)


def test_batch_and_incremental_see_the_same_adjusted_inputs(bars, detected, panel):
    incr = incremental_features(bars, detected)
    for c in VALUATION:
        np.testing.assert_allclose(incr[c].reindex(panel.index).to_numpy(), panel[c].to_numpy(),
                                   rtol=1e-12, equal_nan=True, err_msg=c)
    fund_raw = load_fundamentals(FUND, splits=load_splits(SPLITS), price_basis="raw")
    rb = raw_bars(bars)
    a, b = compute_features(rb, fund_raw), incremental_features(rb, fund_raw)
    np.testing.assert_allclose(b["log_market_cap"].reindex(a.index).to_numpy(), a["log_market_cap"].to_numpy(),
                               rtol=1e-12, equal_nan=True)
