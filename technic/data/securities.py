"""Security metadata (Kaggle ``securities.csv``): ticker, name, GICS sector and sub-industry.

Sectors are a static snapshot (about 2016); symbols missing from the file have no sector
(callers treat them as NaN / an "unknown" group, never guess).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from technic.data.bars import read_table, require_columns, row_number
from technic.errors import DataError

__all__ = ["load_securities", "sector_map", "SOURCE_COLUMNS"]

SOURCE_COLUMNS = {
    "symbol": "Ticker symbol",
    "name": "Security",
    "sector": "GICS Sector",
    "sub_industry": "GICS Sub Industry",
}


def load_securities(path) -> pd.DataFrame:
    """Columns ``symbol``, ``name``, ``sector``, ``sub_industry`` (str; NaN when blank).

    A duplicated ticker keeps its first row. Missing ticker -> DataError naming the row.
    """
    p = Path(str(path))
    try:
        raw = read_table(p, dtype=str)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{p.name}: cannot read file: {exc}") from None
    cols = dict(SOURCE_COLUMNS)
    if "Ticker symbol" not in raw.columns and "symbol" in raw.columns:  # already canonical
        cols = {k: k for k in SOURCE_COLUMNS}
    require_columns(raw.columns, list(cols.values()), p.name)
    out = pd.DataFrame({k: raw[v].astype("str").str.strip() for k, v in cols.items()})
    out = out.replace("", np.nan)
    miss = out["symbol"].isna().to_numpy()
    if miss.any():
        i = int(np.flatnonzero(miss)[0])
        raise DataError(f"{p.name}: row {row_number(raw, i)}, column '{cols['symbol']}': missing ticker")
    out = out.drop_duplicates("symbol", keep="first").reset_index(drop=True)
    return out.astype("str")


def sector_map(securities: pd.DataFrame) -> dict[str, str]:
    """``{symbol: sector}`` for rows with a sector."""
    s = securities.dropna(subset=["sector"])
    return dict(zip(s["symbol"].astype(str), s["sector"].astype(str)))
