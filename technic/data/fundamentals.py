"""Annual fundamentals (Kaggle ``dgawlik/nyse`` ``fundamentals.csv``) in canonical form.

Output columns: ``symbol``, ``period_end``, ``available_from`` and the float64 fields in
``FUNDAMENTAL_FIELDS`` (NaN when the item is absent from the file or empty).

Point in time: ``available_from`` is the publish/filing date when the file carries one
(a column named ``publish_date``, ``Publish Date``, ``filing_date``, ``Filing Date`` or
``available_from``; an empty cell there falls back to the lag rule), otherwise
``period_end + lag_days`` (default 90 days; the Kaggle file has no filing dates).

Conventions:

* ``capex`` keeps the sign of the file (negative = spending).
* ``shares`` is ``Estimated Shares Outstanding``; when that is NaN and ``eps`` is non-zero
  and finite, it falls back to ``net_income / eps`` (the same estimate the source uses).
* growth fields (:func:`derive_growth`), per symbol against its previous ``period_end`` row:
  ``x_growth = (x_t - x_prev) / |x_prev|`` for revenue, net income (``earnings_growth``)
  and total assets; NaN for the first row or when ``x_prev`` is 0 / NaN.
* duplicate (symbol, period_end) rows: the last one in the file wins; the count is in
  ``df.attrs["duplicates_dropped"]``.
* ``period_end`` before 1990 or after today: kept, listed in ``df.attrs["warnings"]``.
* a missing or unparseable ``Period Ending`` / ``Ticker Symbol`` is a DataError naming the row.

Split consistency (:mod:`technic.data.split_adjustment`): by default ``shares`` and ``eps`` are
put on the share basis of the bars' prices (``price_basis``: ``"adjusted"``, the default, or
``"raw"``), using the splits of a ``splits`` file (path or frame, ``date,symbol,ratio``) or,
without one, the splits detected from share-count steps. ``adjust_splits=False`` returns the
counts as reported. ``df.attrs["split_report"]`` is the :class:`SplitReport` (None when not
adjusted). Growth fields are not per share and are computed before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from technic.data.bars import parse_dates, parse_numeric, read_table, require_columns, row_number
from technic.data.split_adjustment import split_consistent
from technic.data.splits import load_splits, validate_splits
from technic.errors import DataError

__all__ = ["FUNDAMENTAL_FIELDS", "SOURCE_COLUMNS", "GROWTH_FIELDS", "load_fundamentals", "derive_growth"]

#: canonical field -> column name in the Kaggle file
SOURCE_COLUMNS: dict[str, str] = {
    "net_income": "Net Income",
    "total_revenue": "Total Revenue",
    "total_equity": "Total Equity",
    "total_assets": "Total Assets",
    "total_liabilities": "Total Liabilities",
    "long_term_debt": "Long-Term Debt",
    "short_term_debt": "Short-Term Debt / Current Portion of Long-Term Debt",
    "cash": "Cash and Cash Equivalents",
    "operating_cash_flow": "Net Cash Flow-Operating",
    "capex": "Capital Expenditures",
    "gross_profit": "Gross Profit",
    "operating_income": "Operating Income",
    "ebit": "Earnings Before Interest and Tax",
    "interest_expense": "Interest Expense",
    "rnd": "Research and Development",
    "total_current_assets": "Total Current Assets",
    "total_current_liabilities": "Total Current Liabilities",
    "retained_earnings": "Retained Earnings",
    "stock_repurchase": "Sale and Purchase of Stock",
    "eps": "Earnings Per Share",
    "shares": "Estimated Shares Outstanding",
}

#: growth field -> base field
GROWTH_FIELDS: dict[str, str] = {
    "revenue_growth": "total_revenue",
    "earnings_growth": "net_income",
    "asset_growth": "total_assets",
}

FUNDAMENTAL_FIELDS: tuple[str, ...] = tuple(SOURCE_COLUMNS) + tuple(GROWTH_FIELDS)

_PUBLISH_COLUMNS = ("publish_date", "Publish Date", "filing_date", "Filing Date", "available_from")
_SYMBOL_COLUMNS = ("Ticker Symbol", "symbol")
_PERIOD_COLUMNS = ("Period Ending", "period_end")


def derive_growth(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` (columns ``symbol``, ``period_end`` + base fields) with the
    growth fields added, computed per symbol against the previous ``period_end`` row.
    Row order and index are preserved."""
    out = df.copy()
    order = out.sort_values(["symbol", "period_end"], kind="mergesort").index
    s = out.loc[order]
    for g, base in GROWTH_FIELDS.items():
        if base not in s.columns:
            out[g] = np.nan
            continue
        x = s[base].astype("float64")
        prev = x.groupby(s["symbol"], sort=False).shift(1)
        den = prev.abs().where(prev.abs() > 0)
        out[g] = ((x - prev) / den).reindex(out.index)
    return out


def _pick(columns, candidates, source):
    for c in candidates:
        if c in columns:
            return c
    require_columns(columns, [candidates[0]], source)


def load_fundamentals(path, *, lag_days: int = 90, splits=None, price_basis: str = "adjusted",
                      adjust_splits: bool = True) -> pd.DataFrame:
    """Load fundamentals (.csv / .csv.gz / .parquet) in canonical point-in-time form, share
    counts and EPS on ``price_basis`` (see the module docstring)."""
    p = Path(str(path))
    name = p.name
    try:
        lag = pd.Timedelta(days=int(lag_days))
    except (TypeError, ValueError):
        raise DataError(f"{name}: lag_days must be a whole number of days, got {lag_days!r}") from None
    if lag < pd.Timedelta(0):
        raise DataError(f"{name}: lag_days must be >= 0, got {lag_days}")
    try:
        raw = read_table(p, dtype=str)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name}: cannot read file: {exc}") from None
    # the first, unnamed column of the Kaggle file is a row index
    raw = raw[[c for c in raw.columns if not (str(c) == "" or str(c).startswith("Unnamed:"))]]
    sym_col = _pick(raw.columns, _SYMBOL_COLUMNS, name)
    per_col = _pick(raw.columns, _PERIOD_COLUMNS, name)
    rowf = lambda i: row_number(raw, i)  # noqa: E731

    sym = raw[sym_col].astype("str").str.strip()
    miss = (raw[sym_col].isna() | sym.eq("")).to_numpy()
    if miss.any():
        i = int(np.flatnonzero(miss)[0])
        raise DataError(f"{name}: row {rowf(i)}, column '{sym_col}': missing symbol")
    out = pd.DataFrame({"symbol": sym.astype("str"),
                        "period_end": parse_dates(raw, per_col, name, row_of=rowf)})
    lagged = out["period_end"] + lag
    pub_col = next((c for c in _PUBLISH_COLUMNS if c in raw.columns), None)
    if pub_col is not None:
        pub = parse_dates(raw, pub_col, name, allow_missing=True, row_of=rowf)
        out["available_from"] = pub.fillna(lagged)
    else:
        out["available_from"] = lagged
    for f, col in SOURCE_COLUMNS.items():
        out[f] = parse_numeric(raw, col, name, row_of=rowf) if col in raw.columns else np.nan
    fallback = out["shares"].isna() & out["eps"].ne(0) & np.isfinite(out["eps"]) & out["net_income"].notna()
    out.loc[fallback, "shares"] = out.loc[fallback, "net_income"] / out.loc[fallback, "eps"]

    warnings: list[str] = []
    dup = out.duplicated(["symbol", "period_end"], keep="last").to_numpy()
    for i in np.flatnonzero(dup)[:10]:
        warnings.append(f"{name}: row {rowf(int(i))}: duplicate ({out['symbol'].iat[i]}, "
                        f"{out['period_end'].iat[i]:%Y-%m-%d}) superseded by a later row")
    today = pd.Timestamp.today().normalize()
    odd = ((out["period_end"] < pd.Timestamp("1990-01-01")) | (out["period_end"] > today)).to_numpy()
    for i in np.flatnonzero(odd):
        warnings.append(f"{name}: row {rowf(int(i))}, column '{per_col}': implausible period end "
                        f"{out['period_end'].iat[i]:%Y-%m-%d} for {out['symbol'].iat[i]} (kept)")
    out = out[~dup]
    out = derive_growth(out.sort_values(["symbol", "period_end"], kind="mergesort").reset_index(drop=True))
    out = out[["symbol", "period_end", "available_from", *FUNDAMENTAL_FIELDS]]
    report = None
    if adjust_splits:
        table = None
        if splits is not None:
            table = validate_splits(splits) if isinstance(splits, pd.DataFrame) else load_splits(splits)
        out, report = split_consistent(out, table, price_basis=price_basis)
    out.attrs["split_report"] = report
    out.attrs["warnings"] = warnings
    out.attrs["duplicates_dropped"] = int(dup.sum())
    out.attrs["lag_days"] = int(lag_days)
    out.attrs["available_from_source"] = pub_col or f"period_end + {int(lag_days)} days"
    return out
