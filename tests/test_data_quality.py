"""Quality report: each defect injected into a real fixture, counts checked against a loop oracle."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data.bars import load_bars
from technic.data.quality import POLICY, QualityReport, quality_report

FIX = Path(__file__).resolve().parent / "fixtures"


def data_dir() -> Path:
    env = os.environ.get("TECHNIC_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def oracle(b: pd.DataFrame, jump=0.4, spike=0.1, frac=0.7) -> dict[str, int]:
    """Plain-Python recount of every check, row by row."""
    rows = list(b.itertuples(index=False))
    c: dict[str, int] = {k: 0 for k in ("nan_open", "nan_high", "nan_low", "nan_close", "nan_volume",
                                        "nonpositive_price", "high_lt_low", "oc_outside_range",
                                        "zero_volume", "negative_volume", "duplicate", "stale",
                                        "jump", "spike_revert", "gap", "gap_days")}
    seen = set()
    bysym: dict[str, list] = {}
    for r in rows:
        for k in ("open", "high", "low", "close", "volume"):
            c[f"nan_{k}"] += math.isnan(getattr(r, k))
        c["nonpositive_price"] += any(getattr(r, k) <= 0 for k in ("open", "high", "low", "close"))
        c["high_lt_low"] += r.high < r.low
        c["oc_outside_range"] += any(x < r.low or x > r.high for x in (r.open, r.close))
        c["zero_volume"] += r.volume == 0
        c["negative_volume"] += r.volume < 0
        c["duplicate"] += (r.symbol, r.date) in seen
        seen.add((r.symbol, r.date))
        bysym.setdefault(r.symbol, []).append(r)
    cal = sorted(set(b["date"]))
    for sym, rs in bysym.items():
        rs = sorted(rs, key=lambda r: r.date)  # stable: file order among equal dates
        for i, r in enumerate(rs):
            if i > 0:
                p = rs[i - 1]
                same = all(getattr(r, k) == getattr(p, k) or (math.isnan(getattr(r, k)) and math.isnan(getattr(p, k)))
                           for k in ("open", "high", "low", "close", "volume"))
                c["stale"] += same and r.date != p.date
                ret = r.close / p.close - 1
                c["jump"] += abs(ret) > jump
                if i + 1 < len(rs) and abs(ret) > spike and r.close != p.close:
                    c["spike_revert"] += (r.close - rs[i + 1].close) / (r.close - p.close) > frac
        ds = sorted(set(r.date for r in rs))
        idx = [cal.index(d) for d in ds]
        for a, z in zip(idx, idx[1:]):
            if z - a > 1:
                c["gap"] += 1
                c["gap_days"] += z - a - 1
    return c


@pytest.fixture(scope="module")
def bars():
    return load_bars(FIX / "bars_small.csv")


def inject(b: pd.DataFrame) -> pd.DataFrame:
    b = b.copy()
    at = lambda s, d: b.index[(b["symbol"] == s) & (b["date"] == pd.Timestamp(d))][0]  # noqa: E731
    b.loc[at("AAPL", "2016-04-12"), "high"] = np.nan
    b.loc[at("AAPL", "2016-04-13"), "close"] = np.nan
    b.loc[at("XOM", "2016-04-12"), "low"] = -1.0                     # non-positive price
    b.loc[at("XOM", "2016-04-14"), ["high", "low"]] = [80.0, 81.0]   # high < low (+ oc outside)
    b.loc[at("ZTS", "2016-04-12"), "volume"] = 0.0
    b.loc[at("ZTS", "2016-04-13"), "volume"] = -10.0
    # stale: copy the previous bar's OHLCV
    i = at("WRK", "2016-06-02")
    j = at("WRK", "2016-06-01")
    b.loc[i, ["open", "high", "low", "close", "volume"]] = b.loc[j, ["open", "high", "low", "close", "volume"]].to_numpy()
    # spike and revert (+20% then back) and a lone >40% jump that stays
    k = at("XOM", "2016-05-10")
    b.loc[k, "close"] = b.loc[at("XOM", "2016-05-09"), "close"] * 1.2
    b.loc[b.index[(b["symbol"] == "ZTS") & (b["date"] >= "2016-06-20")], "close"] *= 1.5
    # gap: remove two consecutive AAPL days and one ZTS day
    drop = b.index[((b["symbol"] == "AAPL") & b["date"].isin(pd.to_datetime(["2016-05-03", "2016-05-04"])))
                   | ((b["symbol"] == "ZTS") & (b["date"] == "2016-05-17"))]
    b = b.drop(drop)
    dup = b[(b["symbol"] == "LNT") & (b["date"] == "2016-04-20")]
    return pd.concat([b, dup], ignore_index=True).sort_values(["date", "symbol"], kind="mergesort").reset_index(drop=True)


def test_fixture_real_defects(bars):
    rep = quality_report(bars)
    assert rep.counts == oracle(bars)
    assert rep.counts["jump"] == 2 and ("LNT", "2016-05-19") in rep.examples["jump"]
    assert rep.examples["spike_revert"] == [("LNT", "2016-05-19")]
    assert rep.examples["zero_volume"] == [("UA", "2016-04-07")]
    assert rep.counts["oc_outside_range"] == 3


def test_injected_defects_counted(bars):
    b = inject(bars)
    rep = quality_report(b)
    assert rep.counts == oracle(b)
    c = rep.counts
    assert c["nan_high"] == 2 and c["nan_close"] == 1 and c["nan_open"] == 1
    assert c["nonpositive_price"] == 1 and c["high_lt_low"] == 1
    assert c["zero_volume"] == 2 and c["negative_volume"] == 1 and c["duplicate"] == 1
    assert c["stale"] == 1 and ("WRK", "2016-06-02") in rep.examples["stale"]
    assert ("XOM", "2016-05-10") in rep.examples["spike_revert"]
    assert ("ZTS", "2016-06-20") in rep.examples["jump"]
    assert (c["gap"], c["gap_days"]) == (2, 3)
    assert rep.examples["gap"] == [("AAPL", "2016-05-03"), ("ZTS", "2016-05-17")]
    assert ("LNT", "2016-04-20") in rep.examples["duplicate"]


def test_thresholds_and_outputs(bars):
    rep = quality_report(bars, jump_threshold=0.05)
    assert rep.counts == oracle(bars, jump=0.05)
    d = rep.to_dict()
    json.dumps(d)  # serializable
    assert d["counts"]["jump"] == rep.counts["jump"] and d["params"]["jump_threshold"] == 0.05
    s = rep.summary()
    assert "jump" in s and "stale" in s and "380 rows" in s
    assert isinstance(rep, QualityReport)
    assert POLICY["jump"] == "report only" and POLICY["nan_close"] == "drop row"


@pytest.mark.slow
def test_dev_data_known_issues():
    path = data_dir() / "all_stocks_5yr.csv.gz"
    if not path.exists():
        pytest.skip(f"dev data not found at {path}")
    rep = quality_report(load_bars(path))
    c = rep.counts
    assert (c["nan_open"], c["nan_high"], c["nan_low"], c["nan_close"]) == (11, 8, 8, 0)
    assert c["high_lt_low"] == 1 and rep.examples["high_lt_low"] == [("AOS", "2014-05-19")]
    assert c["oc_outside_range"] == 12 and c["zero_volume"] == 4 and c["stale"] == 277
    assert c["gap"] == 17 and c["duplicate"] == 0
    assert c["jump"] == 11 and c["spike_revert"] == 29
