"""Optional alternative data, long format ``date,symbol,field,value`` (.csv/.csv.gz/.parquet).

Known fields (``ALT_FIELDS``); a value is as-of its ``date`` (known at that day's close):

==============  ====================================================================
field           meaning
==============  ====================================================================
sentiment       daily mean news sentiment in [-1, 1] (published only on days with news)
news_count      number of news articles that day (0 is published on days without news)
short_interest  shares sold short, from the latest exchange report (step function)
put_call_ratio  option put volume / call volume that day (>= 0)
==============  ====================================================================

Unknown fields are loaded but listed in ``df.attrs["warnings"]``. Values outside the
documented range of a known field are a DataError (they indicate a unit/format mix-up).

The repository ships NO real alternative data. :func:`make_synthetic_alt` generates a
random, clearly labelled SYNTHETIC file for tests and demos only: it carries no
information about returns and must never be used for research results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from technic.data.bars import parse_dates, parse_numeric, read_table, require_columns, row_number
from technic.errors import DataError

__all__ = ["ALT_FIELDS", "ALT_COLUMNS", "load_alt", "validate_alt", "make_synthetic_alt"]

ALT_FIELDS: tuple[str, ...] = ("sentiment", "news_count", "short_interest", "put_call_ratio")
ALT_COLUMNS: tuple[str, ...] = ("date", "symbol", "field", "value")

#: inclusive valid range per known field
_RANGES = {
    "sentiment": (-1.0, 1.0),
    "news_count": (0.0, np.inf),
    "short_interest": (0.0, np.inf),
    "put_call_ratio": (0.0, np.inf),
}


def validate_alt(df: pd.DataFrame, source: str = "<frame>") -> pd.DataFrame:
    """Validate a long-format frame and return it canonical: date (datetime64[ns]),
    symbol (str), field (str), value (float64), sorted by (date, symbol, field)."""
    require_columns(df.columns, list(ALT_COLUMNS), source)
    rowf = lambda i: row_number(df, i)  # noqa: E731
    raw = df.reset_index(drop=True)
    out = pd.DataFrame({"date": parse_dates(raw, "date", source, row_of=rowf)})
    for c in ("symbol", "field"):
        s = raw[c].astype("str").str.strip()
        miss = (raw[c].isna() | s.eq("")).to_numpy()
        if miss.any():
            i = int(np.flatnonzero(miss)[0])
            raise DataError(f"{source}: row {rowf(i)}, column '{c}': missing value")
        out[c] = s.astype("str")
    out["value"] = parse_numeric(raw, "value", source, row_of=rowf)
    for f, (lo, hi) in _RANGES.items():
        v = out["value"].to_numpy()
        bad = (out["field"].eq(f).to_numpy()) & ((v < lo) | (v > hi))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{source}: row {rowf(i)}, column 'value': {f} = {float(v[i]):g} outside [{lo}, {hi}]")
    unknown = sorted(set(out["field"].unique()) - set(ALT_FIELDS))
    out = out.sort_values(["date", "symbol", "field"], kind="mergesort").reset_index(drop=True)
    out.attrs["warnings"] = ([f"{source}: unknown alt field(s) {', '.join(unknown)} (loaded, not documented)"]
                             if unknown else [])
    return out


def load_alt(path) -> pd.DataFrame:
    """Load an alt-data file (long format) in canonical form; see :func:`validate_alt`."""
    p = Path(str(path))
    try:
        raw = read_table(p, dtype=str)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{p.name}: cannot read file: {exc}") from None
    return validate_alt(raw, p.name)


def make_synthetic_alt(bars: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """SYNTHETIC alt data for tests/demos only: random numbers, NOT real data.

    For every (date, symbol) of ``bars``: ``news_count`` ~ Poisson(1.5); ``sentiment``
    (only when news_count > 0) ~ clip(Normal(0, 0.3), -1, 1); ``put_call_ratio`` ~
    LogNormal(-0.3, 0.3); ``short_interest`` every 10th bar of a symbol (a report), a random
    walk around 2% of 1e9 shares. Deterministic given ``seed``. ``attrs["synthetic"] = True``.
    """
    rng = np.random.default_rng(seed)
    b = bars[["date", "symbol"]].drop_duplicates().sort_values(["symbol", "date"], kind="mergesort")
    n = len(b)
    dates, syms = b["date"].to_numpy(), b["symbol"].astype(str).to_numpy()
    news = rng.poisson(1.5, n).astype("float64")
    sent = np.clip(rng.normal(0.0, 0.3, n), -1.0, 1.0)
    pcr = rng.lognormal(-0.3, 0.3, n)
    k = b.groupby("symbol", sort=False).cumcount().to_numpy()
    report = k % 10 == 0
    walk = np.exp(rng.normal(0.0, 0.05, n))
    si = 2e7 * pd.Series(walk).groupby(syms).cumprod().to_numpy()
    parts = [
        pd.DataFrame({"date": dates, "symbol": syms, "field": "news_count", "value": news}),
        pd.DataFrame({"date": dates, "symbol": syms, "field": "sentiment", "value": sent})[news > 0],
        pd.DataFrame({"date": dates, "symbol": syms, "field": "put_call_ratio", "value": pcr}),
        pd.DataFrame({"date": dates, "symbol": syms, "field": "short_interest", "value": np.round(si)})[report],
    ]
    out = pd.concat(parts, ignore_index=True)
    out["date"] = out["date"].astype("datetime64[ns]")
    out["symbol"] = out["symbol"].astype("str")
    out["field"] = out["field"].astype("str")
    out = out.sort_values(["date", "symbol", "field"], kind="mergesort").reset_index(drop=True)
    out.attrs["synthetic"] = True
    out.attrs["warnings"] = ["SYNTHETIC alt data (random, not real): tests and demos only"]
    return out
