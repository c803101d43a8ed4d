"""Splits file (date,symbol,ratio): canonical form and strict, one-line errors (also through the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from technic.data.splits import load_splits, validate_splits
from technic.errors import DataError

FIX = Path(__file__).resolve().parent / "fixtures"


def write(tmp_path, text, name="s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_canonical_form(tmp_path):
    p = write(tmp_path, "date,symbol,ratio,source\n2015-07-15, NFLX ,7,x\n2014-06-09,AAPL,7,y\n"
                        "2016-01-04,XYZ,3/2,z\n2016-02-01,XYZ,1:4,z\n2016-03-01,XYZ,0.5,z\n")
    s = load_splits(p)
    assert list(s.columns) == ["date", "symbol", "ratio"] and str(s["date"].dtype) == "datetime64[ns]"
    assert s["symbol"].tolist() == ["AAPL", "NFLX", "XYZ", "XYZ", "XYZ"]  # sorted by symbol, date; stripped
    assert s["ratio"].tolist() == [7.0, 7.0, 1.5, 0.25, 0.5]
    assert s.attrs["source"] == "s.csv"
    assert load_splits(FIX / "splits_small.csv")["ratio"].tolist() == [7.0, 7.0]
    assert load_splits(write(tmp_path, "date,symbol,ratio\n")).empty


def test_parquet_and_frame(tmp_path):
    df = pd.DataFrame({"date": pd.to_datetime(["2014-06-09"]), "symbol": ["AAPL"], "ratio": [7.0]})
    df.to_parquet(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(load_splits(tmp_path / "s.parquet"), validate_splits(df))


@pytest.mark.parametrize("body,msg", [
    ("2014-06-09,AAPL,-7", "s.csv: row 3, column 'ratio': expected new shares per old share (a positive number "
                           "other than 1, e.g. 7, 0.5 or 3/2), got '-7'"),
    ("2014-06-09,AAPL,0", "row 3, column 'ratio'"),
    ("2014-06-09,AAPL,1", "row 3, column 'ratio'"),
    ("2014-06-09,AAPL,seven", "row 3, column 'ratio': expected new shares per old share"),
    ("2014-06-09,AAPL,3/0", "row 3, column 'ratio'"),
    ("2014-06-09,AAPL,inf", "row 3, column 'ratio'"),
    ("2014-06-09,AAPL,", "row 3, column 'ratio': expected new shares per old share (a positive number other "
                         "than 1, e.g. 7, 0.5 or 3/2), got ''"),
    ("2014-06-09,,7", "s.csv: row 3, column 'symbol': missing symbol"),
    ("2014-13-45,AAPL,7", "s.csv: row 3, column 'date': cannot parse '2014-13-45' as a date"),
    (",AAPL,7", "s.csv: row 3, column 'date': missing date"),
    ("2015-07-15,NFLX,2", "s.csv: row 3, column 'date': a second split for NFLX on 2015-07-15"),
])
def test_bad_rows_name_file_row_and_column(tmp_path, body, msg):
    p = write(tmp_path, f"date,symbol,ratio\n2015-07-15,NFLX,7\n{body}\n")
    with pytest.raises(DataError) as ei:
        load_splits(p)
    assert msg in str(ei.value) and "\n" not in str(ei.value)
    assert str(ei.value).startswith("s.csv: ")


def test_missing_column_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"^s.csv: missing required column\(s\) 'ratio'"):
        load_splits(write(tmp_path, "date,symbol,factor\n2014-06-09,AAPL,7\n"))
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_splits(tmp_path / "nope.csv")


def _cli(*args):
    exe = Path(sys.executable).parent / "technic"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=dict(os.environ), timeout=120)


def test_cli_bad_splits_file_exits_2_with_one_line(tmp_path):
    bad = write(tmp_path, "date,symbol,ratio\n2014-06-09,AAPL,7\n2015-07-15,NFLX,x7\n")
    fund = str(FIX / "fundamentals_splits.csv")
    for args in (["data", "quality", "--fundamentals", fund, "--splits", str(bad)],
                 ["features", "compute", "--bars", str(FIX / "bars_splits.csv.gz"), "--fundamentals", fund,
                  "--splits", str(bad), "--out", str(tmp_path / "f.parquet")]):
        r = _cli(*args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == ("error: s.csv: row 3, column 'ratio': expected new shares per old share "
                                    "(a positive number other than 1, e.g. 7, 0.5 or 3/2), got 'x7'"), r.stderr
    r = _cli("data", "quality", "--fundamentals", fund, "--price-basis", "raw")
    assert r.returncode == 2 and "needs a splits file" in r.stderr and "Traceback" not in r.stderr
    r = _cli("data", "quality", "--bars", str(FIX / "bars_small.csv"), "--splits", str(FIX / "splits_small.csv"))
    assert r.returncode == 2 and "--splits needs --fundamentals" in r.stderr
