"""Labels against a plain per-symbol Python loop; bar (not calendar) horizons; truncation probe."""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data.bars import load_bars
from technic.errors import DataError
from technic.labels import forward_returns, label_columns, make_labels

FIX = Path(__file__).resolve().parent / "fixtures"


def data_dir() -> Path:
    env = os.environ.get("TECHNIC_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def bars():
    b = load_bars(FIX / "bars_small.csv")
    # a hole in AAPL's history: labels count bars, not calendar days
    return b[~((b["symbol"] == "AAPL") & b["date"].isin(pd.to_datetime(["2016-05-03", "2016-05-04"])))]


def loop_labels(bars, horizons, lag=1):
    seq: dict[str, list] = {}
    for d, s, c in sorted(zip(bars["date"], bars["symbol"], bars["close"])):
        seq.setdefault(s, []).append((d, c))
    fwd = {}
    for s, rows in seq.items():
        for i, (d, c) in enumerate(rows):
            for h in horizons:
                ok = i + lag + h < len(rows) and rows[i + lag][1] > 0 and rows[i + lag + h][1] > 0
                fwd[(d, s, h)] = rows[i + lag + h][1] / rows[i + lag][1] - 1 if ok else math.nan
    out = {}
    dates = sorted({d for d, _, _ in fwd})
    for h in horizons:
        for d in dates:
            vals = {s: fwd[(d2, s, h2)] for (d2, s, h2) in fwd if d2 == d and h2 == h}
            have = {s: v for s, v in vals.items() if not math.isnan(v)}
            med = statistics.median(have.values()) if have else math.nan
            for s, v in vals.items():
                if math.isnan(v):
                    rank = math.nan
                else:
                    below = sum(x < v for x in have.values())
                    ties = sum(x == v for x in have.values())
                    rank = (below + (ties + 1) / 2) / len(have)
                out.setdefault((d, s), {}).update({f"fwd_ret_{h}": v, f"excess_{h}": v - med, f"rank_{h}": rank})
    idx = pd.MultiIndex.from_tuples(sorted(out), names=["date", "symbol"])
    return pd.DataFrame([out[k] for k in idx], index=idx)


@pytest.mark.parametrize("lag", [0, 1, 3])
def test_make_labels_matches_loop(bars, lag):
    got = make_labels(bars, horizons=(5, 10), lag=lag)
    exp = loop_labels(bars, (5, 10), lag)[label_columns((5, 10))]
    assert list(got.columns) == label_columns((5, 10))
    assert got.index.names == ["date", "symbol"] and got.index.is_monotonic_increasing
    assert len(got) == len(bars)
    pd.testing.assert_frame_equal(got, exp, check_exact=False, rtol=1e-12, atol=1e-15, check_index_type=False)
    r = got["rank_5"].dropna()
    assert (r > 0).all() and (r <= 1).all()


def test_default_lag_is_one_bar(bars):
    """A score at close t trades at t+1 at the earliest: by default the label runs close t+1 -> t+1+h."""
    a = bars[bars["symbol"] == "XOM"].set_index("date")["close"]
    fr = forward_returns(bars, horizons=(5,))
    d = a.index[10]
    assert fr.loc[(d, "XOM"), "fwd_ret_5"] == pytest.approx(a.iloc[16] / a.iloc[11] - 1)
    assert make_labels(bars, (5,)).attrs["lag"] == 1


def test_bar_horizon_not_calendar(bars):
    fr = forward_returns(bars, horizons=(1,), lag=0)
    a = bars[bars["symbol"] == "AAPL"].set_index("date")["close"]
    # the bar after 2016-05-02 is 2016-05-05 (two days are missing)
    assert fr.loc[(pd.Timestamp("2016-05-02"), "AAPL"), "fwd_ret_1"] == pytest.approx(
        a[pd.Timestamp("2016-05-05")] / a[pd.Timestamp("2016-05-02")] - 1)
    last = fr.xs(bars["date"].max(), level="date")["fwd_ret_1"]
    assert last.isna().all()


@pytest.mark.parametrize("lag", [0, 1])
def test_truncation_changes_only_last_h_bars(bars, lag):
    """Labels at t use bars up to t+lag+h only: cutting the data after T changes labels for
    the last lag+h bars before T (they become NaN) and nothing earlier."""
    h = 5
    full = forward_returns(bars, horizons=(h,), lag=lag)
    dates = sorted(bars["date"].unique())
    cut = dates[40]
    part = forward_returns(bars[bars["date"] <= cut], horizons=(h,), lag=lag)
    common = full.loc[part.index]
    safe = part.index.get_level_values("date") <= dates[40 - h - lag]
    pd.testing.assert_frame_equal(part[safe], common[safe])
    assert part[~safe].isna().all().all()


def test_nonpositive_close_and_errors(bars):
    b = bars.copy()
    b.loc[b.index[(b["symbol"] == "XOM")][10], "close"] = 0.0
    fr = forward_returns(b, horizons=(1,), lag=0)
    xom = fr.xs("XOM", level="symbol")["fwd_ret_1"]
    assert xom.iloc[10] != xom.iloc[10] and xom.iloc[9] != xom.iloc[9]  # NaN on both sides
    with pytest.raises(DataError, match="duplicate bar"):
        make_labels(pd.concat([bars, bars.iloc[:1]]))
    with pytest.raises(DataError, match="horizons"):
        make_labels(bars, horizons=(0,))
    with pytest.raises(DataError, match="lag"):
        make_labels(bars, horizons=(5,), lag=-1)
    with pytest.raises(DataError, match="lack column"):
        make_labels(bars.drop(columns="close"))


@pytest.mark.slow
def test_full_dev_labels():
    path = data_dir() / "all_stocks_5yr.csv.gz"
    if not path.exists():
        pytest.skip("dev data not found")
    b = load_bars(path)
    lab = make_labels(b)
    assert len(lab) == len(b)
    assert lab["fwd_ret_5"].isna().sum() == 6 * b["symbol"].nunique()  # h + lag trailing bars
    med = lab.groupby(level="date")["excess_5"].median().dropna()
    assert med.abs().max() < 1e-12
