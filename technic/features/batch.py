"""Batch evaluator: the whole registry over a (date, symbol) panel, vectorized.

``compute_features`` is what research and training use. It evaluates the
same declarations as the incremental evaluator (``incremental.py``):
per-symbol time-series expressions on bar-index panels, then the market
stage with the equal-weight market return of each date, then the
cross-sectional transforms date by date with the shared functions of
``cross_section.py``.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import DataError
from . import registry as R
from .cross_section import apply_cross_section, market_return
from .panel import PanelLayout, date_slices
from .program import Program

BAR_COLUMNS = ("date", "symbol", "open", "high", "low", "close", "volume")


def ts_program(features: Iterable[R.Feature] | None = None) -> Program:
    feats = R.TS_FEATURES if features is None else features
    return Program({f.name: f.expr for f in feats})


def market_program() -> Program:
    return Program({f.name: f.expr for f in R.MARKET_FEATURES})


def sector_codes(symbols: Iterable[str], sectors: Mapping[str, str] | None) -> np.ndarray:
    """Integer sector code per symbol (codes follow sorted sector names; -1 = unknown)."""
    symbols = list(symbols)
    if not sectors:
        return np.full(len(symbols), -1, np.int64)
    names = sorted({s for s in sectors.values() if isinstance(s, str) and s})
    code = {name: i for i, name in enumerate(names)}
    return np.array([code.get(sectors.get(s, ""), -1) for s in symbols], dtype=np.int64)


def sectors_from(securities) -> dict[str, str] | None:
    """Accept a securities frame (symbol, sector) or a ready mapping."""
    if securities is None:
        return None
    if isinstance(securities, Mapping):
        return dict(securities)
    return dict(zip(securities["symbol"].astype(str), securities["sector"]))


def _check_bars(bars: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise DataError(f"bars: missing column(s) {missing}; expected {list(BAR_COLUMNS)}")
    b = bars[list(BAR_COLUMNS)].copy()
    b["date"] = pd.to_datetime(b["date"])
    b["symbol"] = b["symbol"].astype(str)
    for col in BAR_COLUMNS[2:]:
        b[col] = b[col].astype(np.float64)
    b = b.sort_values(["date", "symbol"], kind="mergesort").reset_index(drop=True)
    dup = b.duplicated(["symbol", "date"])
    if dup.any():
        first = b.loc[dup.idxmax()]
        raise DataError(f"bars: {int(dup.sum())} duplicate (symbol, date) rows, first {first['symbol']} "
                        f"{first['date'].date()}; clean them first (technic.data.clean_bars)")
    return b


def input_columns(bars: pd.DataFrame, fundamentals=None, alt=None) -> dict[str, np.ndarray]:
    """Long input vectors (aligned with sorted bars) for every field the registry reads."""
    cols = {f: bars[f].to_numpy(np.float64) for f in R.BAR_FIELDS}
    n = len(bars)
    fund_fields = R.FUNDAMENTAL_INPUTS
    if fundamentals is not None and len(fundamentals):
        from ..data.pit import asof_fundamentals
        joined = asof_fundamentals(bars, fundamentals, fields=[f for f in fund_fields if f in fundamentals.columns])
        for f in fund_fields:
            cols[f] = joined[f].to_numpy(np.float64) if f in joined else np.full(n, np.nan)
    else:
        cols.update({f: np.full(n, np.nan) for f in fund_fields})
    if alt is not None and len(alt):
        from ..data.pit import asof_alt
        joined = asof_alt(bars, alt, fields=R.ALT_FIELDS)
        for f in R.ALT_FIELDS:
            cols[f] = joined[f].to_numpy(np.float64) if f in joined else np.full(n, np.nan)
    else:
        cols.update({f: np.full(n, np.nan) for f in R.ALT_FIELDS})
    return cols


def compute_features(bars: pd.DataFrame, fundamentals: pd.DataFrame | None = None,
                     securities=None, alt: pd.DataFrame | None = None,
                     progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """All registry features, indexed by (date, symbol), columns in registry order.

    ``bars``: canonical bars (date, symbol, open, high, low, close, volume);
    ``fundamentals``: canonical fundamentals with ``available_from``;
    ``securities``: frame with (symbol, sector) or a symbol -> sector mapping;
    ``alt``: long alt data (date, symbol, field, value). Missing inputs -> NaN.
    """
    b = _check_bars(bars)
    layout = PanelLayout.from_frame(b["date"], b["symbol"])
    cols = input_columns(b, fundamentals, alt)
    panels = {f: layout.to_panel(v) for f, v in cols.items()}

    ts_prog = ts_program()
    ts_out = ts_prog.run_batch(panels, progress)
    out = {name: layout.to_long(p) for name, p in ts_out.items()}
    del ts_out, panels

    # market stage: equal-weight market return of each date, fed per symbol
    dates = b["date"].to_numpy()
    slices = date_slices(dates)
    ret = out["ret_1"]
    mkt = np.empty(len(b))
    for a, z in slices:
        mkt[a:z] = market_return(ret[a:z])
    m_prog = market_program()
    m_out = m_prog.run_batch({"ret": layout.to_panel(ret), "mkt_ret": layout.to_panel(mkt)})
    out.update({name: layout.to_long(p) for name, p in m_out.items()})

    # cross-sectional stage: same function as the stream, date by date
    groups = sector_codes(layout.symbols, sectors_from(securities))[layout.code]
    cs = {spec.name: np.full(len(b), np.nan) for spec in R.CROSS_SECTION}
    sources = {spec.source for spec in R.CROSS_SECTION}
    for a, z in slices:
        res = apply_cross_section(R.CROSS_SECTION, {s: out[s][a:z] for s in sources}, groups[a:z])
        for name, vec in res.items():
            cs[name][a:z] = vec
    out.update(cs)

    frame = pd.DataFrame({name: out[name] for name in R.FEATURE_NAMES})
    frame.index = pd.MultiIndex.from_arrays([b["date"], b["symbol"]], names=["date", "symbol"])
    return frame
