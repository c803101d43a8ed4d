"""Bars loader: canonical shape, formats, selection, and precise user-error messages."""

from __future__ import annotations

import csv
import gzip
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic.data.bars import BAR_COLUMNS, clean_bars, load_bars, select_symbols, validate_bars
from technic.errors import DataError

FIX = Path(__file__).resolve().parent / "fixtures"
BARS = FIX / "bars_small.csv"


def data_dir() -> Path:
    env = os.environ.get("TECHNIC_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def oracle_rows(path: Path):
    """Independent parse with the csv module: list of (date, symbol, o, h, l, c, v)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    num = lambda x: float(x) if x != "" else math.nan  # noqa: E731
    out = [(pd.Timestamp(r["date"]), r["Name"], num(r["open"]), num(r["high"]), num(r["low"]),
            num(r["close"]), num(r["volume"])) for r in rows]
    return sorted(out, key=lambda t: (t[0], t[1]))


def test_canonical_shape_and_values():
    b = load_bars(BARS)
    assert tuple(b.columns) == BAR_COLUMNS
    assert str(b["date"].dtype) == "datetime64[ns]"
    assert all(str(b[c].dtype) == "float64" for c in ("open", "high", "low", "close", "volume"))
    assert isinstance(b.index, pd.RangeIndex)
    assert b.equals(b.sort_values(["date", "symbol"]).reset_index(drop=True))
    exp = oracle_rows(BARS)
    assert len(b) == len(exp) == 380
    got = list(b.itertuples(index=False, name=None))
    for g, e in zip(got, exp):
        assert g[:2] == e[:2]
        np.testing.assert_array_equal(np.array(g[2:], float), np.array(e[2:], float))


def test_formats_and_symbol_column(tmp_path):
    ref = load_bars(BARS)
    raw = pd.read_csv(BARS)
    gz = tmp_path / "b.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write(BARS.read_text())
    pq = tmp_path / "b.parquet"
    raw.sample(frac=1.0, random_state=1).to_parquet(pq, index=False)  # shuffled: loader sorts
    sym = tmp_path / "s.csv"
    raw.rename(columns={"Name": "symbol"}).to_csv(sym, index=False)
    for p in (gz, pq, sym):
        pd.testing.assert_frame_equal(load_bars(p), ref)


def test_symbols_selection_and_dates():
    b = load_bars(BARS)
    b = b[~((b["symbol"] == "AAPL") & (b["date"] == b["date"].min()))].reset_index(drop=True)
    # AAPL now has one row fewer than the others: first full-history symbols come first
    counts = {s: (b["symbol"] == s).sum() for s in b["symbol"].unique()}
    full = sorted(s for s, n in counts.items() if n == max(counts.values()))
    rest = sorted(s for s in counts if s not in full)
    for n in (1, 3, 5, 6, 10):
        got = sorted(select_symbols(b, n)["symbol"].unique())
        assert got == sorted((full + rest)[:n])
    # UA starts late (60 rows) and AAPL lost a row (63): the four 64-row symbols come first
    assert sorted(select_symbols(b, 4)["symbol"].unique()) == ["LNT", "WRK", "XOM", "ZTS"]
    assert "UA" not in set(select_symbols(b, 5)["symbol"])
    sub = load_bars(BARS, symbols=["ZTS", "LNT"], start="2016-05-01", end="2016-05-31")
    assert set(sub["symbol"]) == {"ZTS", "LNT"}
    assert sub["date"].min() >= pd.Timestamp("2016-05-01") and sub["date"].max() <= pd.Timestamp("2016-05-31")
    assert len(sub) == 2 * 21
    with pytest.raises(DataError, match="not in the data: NOPE"):
        load_bars(BARS, symbols=["NOPE"])


def _write_bad(tmp_path, line_no, col, value, name="bars_bad.csv"):
    lines = BARS.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line_no - 1].split(",")
    cells[header.index(col)] = value
    lines[line_no - 1] = ",".join(cells)
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("line_no,col,value,msg", [
    (17, "close", "abc", "bars_bad.csv: row 17, column 'close': cannot parse 'abc' as a number"),
    (300, "volume", "1e3x", "bars_bad.csv: row 300, column 'volume': cannot parse '1e3x' as a number"),
    (5, "date", "2016-13-45", "bars_bad.csv: row 5, column 'date': cannot parse '2016-13-45' as a date"),
    (9, "date", "", "bars_bad.csv: row 9, column 'date': missing date"),
    (2, "Name", "", "bars_bad.csv: row 2, column 'Name': missing symbol"),
])
def test_bad_cells_name_file_row_column(tmp_path, line_no, col, value, msg):
    p = _write_bad(tmp_path, line_no, col, value)
    with pytest.raises(DataError) as ei:
        load_bars(p)
    assert str(ei.value) == msg


def test_bad_cell_in_gzip_and_parquet(tmp_path):
    p = _write_bad(tmp_path, 42, "open", "n/a?")
    gz = tmp_path / "bars_bad.csv.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    with pytest.raises(DataError, match=r"^bars_bad\.csv\.gz: row 42, column 'open': cannot parse 'n/a\?'"):
        load_bars(gz)
    raw = pd.read_csv(BARS, dtype=str)
    raw.loc[9, "high"] = "x"
    raw.to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(DataError, match=r"^b\.parquet: row 10, column 'high'"):  # parquet: record number
        load_bars(tmp_path / "b.parquet")


def test_missing_columns_and_files(tmp_path):
    p = tmp_path / "few.csv"
    p.write_text("date,open,close,Name\n2016-01-04,1,2,A\n")
    with pytest.raises(DataError) as ei:
        load_bars(p)
    assert "few.csv: missing required column(s) 'high', 'low', 'volume'" in str(ei.value)
    with pytest.raises(DataError, match="file not found"):
        load_bars(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: file is empty"):
        load_bars(tmp_path / "empty.csv")


def test_validate_bars_frame():
    raw = pd.read_csv(BARS)
    v = validate_bars(raw)
    pd.testing.assert_frame_equal(v, load_bars(BARS))
    raw = raw.astype({"close": object})
    raw.loc[3, "close"] = "oops"
    with pytest.raises(DataError, match=r"^<frame>: row 5, column 'close': cannot parse 'oops'"):
        validate_bars(raw)


def test_clean_bars_policy():
    b = load_bars(BARS)
    d = pd.Timestamp("2016-05-02")
    i = lambda s: b.index[(b["symbol"] == s) & (b["date"] == d)][0]  # noqa: E731
    b.loc[i("AAPL"), "close"] = np.nan
    b.loc[i("XOM"), "close"] = -1.0
    b.loc[i("ZTS"), "volume"] = -5.0
    b.loc[i("WRK"), ["high", "low"]] = [10.0, 11.0]
    b.loc[i("LNT"), "open"] = 0.0
    dup = b.loc[[i("UA")]].assign(close=999.0)
    b2 = pd.concat([b, dup], ignore_index=True)
    clean, rep = clean_bars(b2)
    a = rep.actions
    assert (a["dropped_nan_close"], a["dropped_nonpositive_close"], a["dropped_negative_volume"],
            a["dropped_duplicate"], a["blanked_high_lt_low"]) == (1, 1, 1, 1, 1)
    assert a["blanked_nonpositive_open_high_low"] == 1
    assert len(clean) == len(b2) - 4 == a["rows_out"]
    assert 999.0 not in set(clean["close"])  # the first copy is kept
    w = clean[(clean["symbol"] == "WRK") & (clean["date"] == d)]
    assert w["high"].isna().all() and w["low"].isna().all()
    assert clean.loc[(clean["symbol"] == "LNT") & (clean["date"] == d), "open"].isna().all()
    # report-only defects are left untouched (LNT 2016-05-19 bad close stays)
    lnt = clean[(clean["symbol"] == "LNT") & (clean["date"] == "2016-05-19")]
    assert lnt["close"].iloc[0] == pytest.approx(17.87)
    assert (clean["volume"] == 0).sum() == 1  # UA 2016-04-07 kept
    with pytest.raises(DataError, match="unknown policy"):
        clean_bars(b, policy="aggressive")


@pytest.mark.slow
def test_full_dev_file_loads_fast():
    path = data_dir() / "all_stocks_5yr.csv.gz"
    if not path.exists():
        pytest.skip(f"dev data not found at {path} (set TECHNIC_DATA_DIR)")
    t = time.perf_counter()
    b = load_bars(path)
    assert time.perf_counter() - t < 10
    assert b.shape == (619040, 7) and b["symbol"].nunique() == 505
    assert b["date"].nunique() == 1259
    assert sorted(load_bars(path, symbols=3)["symbol"].unique()) == ["A", "AAL", "AAP"]
