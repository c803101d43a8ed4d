"""Daily OHLCV bars: load, validate, canonicalize, clean.

Input: the Kaggle ``all_stocks_5yr`` layout ``date,open,high,low,close,volume,Name`` as
``.csv``, ``.csv.gz`` or ``.parquet`` (a ``symbol`` column is accepted instead of ``Name``).

Canonical bars (what every other module consumes): columns exactly
``date`` (datetime64[ns], normalized to midnight), ``symbol`` (str),
``open, high, low, close, volume`` (float64), sorted by (date, symbol), RangeIndex.

User errors raise :class:`technic.errors.DataError` with one message naming the file,
the row (1-based line in the file; the header is line 1, so the first data row is row 2)
and the column, e.g. ``bars.csv: row 17, column 'close': cannot parse 'abc' as a number``.
Empty numeric cells are missing values (NaN), not errors; the quality report counts them.

Loading is vectorized (pandas C parser with dtype hints). Only when the typed parse fails
is the file re-read as text to locate the first bad cell.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from technic.errors import DataError

__all__ = ["BAR_COLUMNS", "PRICE_COLUMNS", "load_bars", "validate_bars", "clean_bars", "select_symbols"]

PRICE_COLUMNS = ("open", "high", "low", "close")
BAR_COLUMNS = ("date", "symbol", "open", "high", "low", "close", "volume")
_NUMERIC = ("open", "high", "low", "close", "volume")


def _name(path) -> str:
    return Path(str(path)).name


def read_table(path, *, dtype=None, usecols=None) -> pd.DataFrame:
    """Read a .csv, .csv.gz or .parquet file into a DataFrame with a RangeIndex.

    CSV numbers are read as given by ``dtype``; when the fast typed parse fails the
    caller re-reads as strings (``dtype=str``) to locate the bad cell.
    """
    p = Path(str(path))
    if not p.exists():
        raise DataError(f"{p.name}: file not found ({p})")
    suffixes = "".join(s.lower() for s in p.suffixes[-2:])
    try:
        if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
            df = pd.read_parquet(p)
            if usecols is not None:
                df = df[[c for c in df.columns if c in usecols]]
            df.attrs["_parquet"] = True
            return df.reset_index(drop=True)
        return pd.read_csv(p, dtype=dtype, usecols=usecols, skip_blank_lines=False,
                           keep_default_na=True)
    except DataError:
        raise
    except pd.errors.ParserError as exc:
        raise DataError(f"{p.name}: malformed CSV: {exc}") from None
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # malformed csv (tokenizer), unreadable parquet, bad gzip ...
        raise DataError(f"{p.name}: cannot read file: {exc}") from None


def row_number(df: pd.DataFrame, pos: int) -> int:
    """1-based line of positional row ``pos`` (header is line 1; parquet: record number)."""
    return pos + 1 if df.attrs.get("_parquet") else pos + 2


def require_columns(columns, required, source: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(
            f"{source}: missing required column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(str(c)) for c in columns)}"
        )


def parse_numeric(df: pd.DataFrame, col: str, source: str, *, row_of=None) -> pd.Series:
    """Column ``col`` as float64; empty cells -> NaN; anything unparseable -> DataError."""
    s = df[col]
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("float64")
    coerced = pd.to_numeric(s, errors="coerce")
    bad = coerced.isna().to_numpy() & s.notna().to_numpy()
    if bad.any():
        sv = s.astype("string")
        bad &= sv.str.strip().fillna("").ne("").to_numpy()  # blank cells are missing, not bad
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            row = (row_of or (lambda p: row_number(df, p)))(pos)
            raise DataError(
                f"{source}: row {row}, column '{col}': cannot parse {str(s.iloc[pos])!r} as a number"
            )
    return coerced.astype("float64")


def parse_dates(df: pd.DataFrame, col: str, source: str, *, allow_missing=False, row_of=None) -> pd.Series:
    """Column ``col`` as normalized datetime64[ns]; missing/unparseable -> DataError."""
    s = df[col]
    rowf = row_of or (lambda p: row_number(df, p))
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = s
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
    else:
        out = pd.to_datetime(s, format="%Y-%m-%d", errors="coerce")
        todo = out.isna() & s.notna()
        if todo.any():  # other formats: parse only the few odd cells, one by one
            fixed = {}
            for i in np.flatnonzero(todo.to_numpy()):
                v = s.iloc[i]
                if str(v).strip() == "":
                    continue
                try:
                    fixed[i] = pd.Timestamp(str(v).strip())
                except (ValueError, TypeError):
                    raise DataError(
                        f"{source}: row {rowf(int(i))}, column '{col}': cannot parse {str(v)!r} as a date"
                    ) from None
                if fixed[i] is pd.NaT:
                    raise DataError(
                        f"{source}: row {rowf(int(i))}, column '{col}': cannot parse {str(v)!r} as a date"
                    )
            if fixed:
                out = out.astype("object")
                for i, v in fixed.items():
                    out.iloc[i] = v.tz_localize(None) if v.tzinfo else v
                out = pd.to_datetime(out)
    out = out.astype("datetime64[ns]").dt.normalize()
    if not allow_missing:
        miss = out.isna().to_numpy()
        if miss.any():
            pos = int(np.flatnonzero(miss)[0])
            raise DataError(f"{source}: row {rowf(pos)}, column '{col}': missing date")
    return out


# ----------------------------------------------------------------------------- bars


def _symbol_column(columns, source: str) -> str:
    if "Name" in columns:
        return "Name"
    if "symbol" in columns:
        return "symbol"
    require_columns(columns, ["date", *_NUMERIC, "Name"], source)  # raises, listing what is missing
    raise AssertionError  # pragma: no cover


def _read_bars_file(path) -> tuple[pd.DataFrame, str]:
    p = Path(str(path))
    name = p.name
    if not p.exists():
        raise DataError(f"{name}: file not found ({p})")
    if p.suffix.lower() in (".parquet", ".pq"):
        return read_table(p), name
    try:
        header = list(pd.read_csv(p, nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: file is empty (expected header date,open,high,low,close,volume,Name)") from None
    except Exception as exc:
        raise DataError(f"{name}: cannot read file: {exc}") from None
    sym = _symbol_column(header, name)
    require_columns(header, ["date", *_NUMERIC, sym], name)
    usecols = ["date", *_NUMERIC, sym]
    dtype = {c: "float64" for c in _NUMERIC} | {"date": str, sym: str}
    try:
        return read_table(p, dtype=dtype, usecols=usecols), name
    except (ValueError, TypeError):  # a cell is not a number: re-read as text to locate it
        return read_table(p, dtype=str, usecols=usecols), name


def _canonical(df: pd.DataFrame, source: str, rowf) -> pd.DataFrame:
    sym = _symbol_column(df.columns, source)
    require_columns(df.columns, ["date", *_NUMERIC, sym], source)
    s = df[sym]
    symbols = s.astype("str").str.strip() if len(s) else s.astype("str")
    miss = (s.isna() | symbols.eq("")).to_numpy()
    if miss.any():
        pos = int(np.flatnonzero(miss)[0])
        raise DataError(f"{source}: row {rowf(pos)}, column '{sym}': missing symbol")
    out = pd.DataFrame({
        "date": parse_dates(df, "date", source, row_of=rowf),
        "symbol": symbols.astype("str"),
    })
    for c in _NUMERIC:
        out[c] = parse_numeric(df, c, source, row_of=rowf)
    out = out.sort_values(["date", "symbol"], kind="mergesort").reset_index(drop=True)
    return out


def validate_bars(df: pd.DataFrame, source: str = "<frame>") -> pd.DataFrame:
    """Validate an already-loaded frame and return it in canonical form.

    Accepts ``Name`` or ``symbol`` for the ticker column. Row numbers in error messages
    count as if the frame were written to CSV with a header (position + 2).
    Raises DataError on missing columns, missing date/symbol, unparseable date or number.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a DataFrame of bars, got {type(df).__name__}")
    frame = df.reset_index(drop=True)
    return _canonical(frame, source, lambda p: row_number(df, p))


def select_symbols(bars: pd.DataFrame, symbols, source: str = "<bars>") -> pd.DataFrame:
    """Keep a subset of symbols of canonical bars.

    ``symbols=N``: the N alphabetically-first symbols among those whose row count equals the
    maximum per-symbol row count (full history); if fewer than N have full history, the rest
    is filled with the next symbols in alphabetical order. ``symbols=[...]``: exactly those
    (DataError if one is absent). ``None``: all.
    """
    if symbols is None:
        return bars
    if isinstance(symbols, (int, np.integer)) and not isinstance(symbols, bool):
        n = int(symbols)
        if n <= 0:
            raise DataError(f"{source}: symbols must be a positive count, got {n}")
        counts = bars.groupby("symbol", sort=True).size()
        full = sorted(counts.index[counts == counts.max()]) if len(counts) else []
        rest = sorted(set(counts.index) - set(full))
        keep = (full + rest)[:n]
    else:
        keep = [str(s) for s in symbols]
        present = set(bars["symbol"].unique())
        absent = [s for s in keep if s not in present]
        if absent:
            raise DataError(f"{source}: symbol(s) not in the data: {', '.join(absent[:20])}")
    out = bars[bars["symbol"].isin(keep)]
    return out.reset_index(drop=True)


def load_bars(path, *, symbols=None, start=None, end=None) -> pd.DataFrame:
    """Load daily bars from .csv / .csv.gz / .parquet into canonical form.

    ``symbols``: None (all), an int N (see :func:`select_symbols`) or a list of tickers.
    ``start`` / ``end``: inclusive date bounds (anything ``pd.Timestamp`` accepts).
    Bars are returned as in the file (not cleaned); see :func:`clean_bars`.
    """
    raw, name = _read_bars_file(path)
    bars = _canonical(raw, name, lambda p: row_number(raw, p))
    if start is not None or end is not None:
        try:
            lo = pd.Timestamp(start) if start is not None else None
            hi = pd.Timestamp(end) if end is not None else None
        except (ValueError, TypeError) as exc:
            raise DataError(f"{name}: bad start/end date: {exc}") from None
        mask = np.ones(len(bars), dtype=bool)
        if lo is not None:
            mask &= (bars["date"] >= lo.normalize()).to_numpy()
        if hi is not None:
            mask &= (bars["date"] <= hi.normalize()).to_numpy()
        bars = bars[mask].reset_index(drop=True)
    return select_symbols(bars, symbols, name)


def clean_bars(df: pd.DataFrame, policy: str = "default"):
    """Apply the documented cleaning policy (see :mod:`technic.data.quality`).

    Returns ``(clean_bars, report)``; ``report`` is the quality report of the input with
    ``report.actions`` counting the rows dropped / cells blanked per reason.
    """
    from technic.data.quality import apply_policy

    return apply_policy(df, policy)
