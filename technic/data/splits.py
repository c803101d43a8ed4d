"""Stock splits file: ``date,symbol,ratio`` (.csv / .csv.gz / .parquet).

One row per split: ``date`` is the first trading day on the new share basis (the ex-date),
``symbol`` the ticker as in the bars, ``ratio`` the new shares per old share -- ``7`` for
AAPL's 7-for-1 split on 2014-06-09, ``0.5`` for a 1-for-2 reverse split. A ratio may also be
written as a fraction ``3/2`` or ``3:2`` (both 1.5). Other columns are ignored.

Validation is strict, since a wrong ratio silently scales every valuation feature: a missing
column, a missing or unparseable date, an empty symbol, a ratio that is not a finite
positive number other than 1, or a repeated (symbol, date) is a :class:`DataError` naming
the file, the row (1-based line; the header is line 1) and the column. A file with only a
header holds no splits.

Canonical frame: ``date`` (datetime64[ns]), ``symbol`` (str), ``ratio`` (float64), sorted by
(symbol, date), RangeIndex; ``attrs["source"]`` is the file name.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from technic.data.bars import parse_dates, read_table, require_columns, row_number
from technic.errors import DataError

__all__ = ["SPLIT_COLUMNS", "load_splits", "validate_splits"]

SPLIT_COLUMNS: tuple[str, ...] = ("date", "symbol", "ratio")


def _parse_ratio(text) -> float:
    """``7``, ``0.5``, ``3/2`` or ``3:2`` -> float; NaN when it is none of these."""
    s = str(text).strip()
    for sep in ("/", ":"):
        if sep in s:
            num, _, den = s.partition(sep)
            try:
                return float(num) / float(den)
            except (ValueError, ZeroDivisionError):
                return math.nan
    try:
        return float(s)
    except ValueError:
        return math.nan


def validate_splits(df: pd.DataFrame, source: str = "<frame>") -> pd.DataFrame:
    """Validate a splits frame and return it canonical (see the module docstring)."""
    require_columns(df.columns, list(SPLIT_COLUMNS), source)
    raw = df.reset_index(drop=True)
    rowf = lambda i: row_number(df, i)  # noqa: E731
    out = pd.DataFrame({"date": parse_dates(raw, "date", source, row_of=rowf)})
    sym = raw["symbol"].astype("str").str.strip()
    miss = (raw["symbol"].isna() | sym.eq("")).to_numpy()
    if miss.any():
        i = int(np.flatnonzero(miss)[0])
        raise DataError(f"{source}: row {rowf(i)}, column 'symbol': missing symbol")
    out["symbol"] = sym.astype("str")
    ratios = []
    for i, cell in enumerate(raw["ratio"].tolist()):
        r = math.nan if cell is None or (isinstance(cell, float) and math.isnan(cell)) else _parse_ratio(cell)
        if not (math.isfinite(r) and r > 0 and r != 1):
            shown = "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell)
            raise DataError(f"{source}: row {rowf(i)}, column 'ratio': expected new shares per old share "
                            f"(a positive number other than 1, e.g. 7, 0.5 or 3/2), got {shown!r}")
        ratios.append(r)
    out["ratio"] = np.asarray(ratios, dtype="float64")
    dup = out.duplicated(["symbol", "date"], keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{source}: row {rowf(i)}, column 'date': a second split for {out['symbol'].iat[i]} "
                        f"on {out['date'].iat[i]:%Y-%m-%d}")
    out = out.sort_values(["symbol", "date"], kind="mergesort").reset_index(drop=True)
    out.attrs["source"] = source
    return out


def load_splits(path) -> pd.DataFrame:
    """Load a splits file in canonical form; see :func:`validate_splits`."""
    p = Path(str(path))
    try:
        raw = read_table(p, dtype=str)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{p.name}: cannot read file: {exc}") from None
    return validate_splits(raw, p.name)
