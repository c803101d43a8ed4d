"""Market regime (past-only) features and sector-neutral training targets.

Regime: from the equal-weight universe's daily return ``ew_t = mean over symbols of ret_1``
(the close-to-close return known at the close of t, the same instant every feature of t is
known), per date:

* ``regime_vol_20``  : annualized trailing 20-date std of ew (dates t-19..t);
* ``regime_trend_60``: trailing 60-date sum of ew (dates t-59..t);
* ``regime_high_vol``: 1 if regime_vol_20 is above its own EXPANDING median up to t, else 0.

Everything uses dates <= t only, so appending these columns can't leak; they are identical
for all symbols of a date, so they are appended AFTER the per-date rank-gauss (which would
map a constant column to 0) and let trees condition the cross-sectional features on the
regime. Streaming them needs a per-universe running state (ew return history), not per-symbol.

Sector-neutral target: ``excess_h`` minus the median of its (date, sector) group (groups with
fewer than ``min_group`` labelled names keep the date-level excess). Training target only;
evaluation always uses ``excess_h``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIME_FEATURES = ("regime_vol_20", "regime_trend_60", "regime_high_vol")


def market_regime(features: pd.DataFrame, ret_col: str = "ret_1", vol_window: int = 20,
                  trend_window: int = 60, min_history: int = 60) -> pd.DataFrame:
    """Per-date regime frame (index = dates) from a (date, symbol) feature panel."""
    if ret_col not in features.columns:
        raise ValueError(f"market_regime needs the {ret_col!r} feature column")
    ew = features[ret_col].groupby(level=0, sort=True).mean()
    vol = ew.rolling(vol_window, min_periods=max(2, vol_window // 2)).std() * np.sqrt(252)
    trend = ew.rolling(trend_window, min_periods=max(2, trend_window // 2)).sum()
    thr = vol.expanding(min_periods=min_history).median()
    high = pd.Series(np.where(thr.notna() & vol.notna(), (vol > thr).astype(float), np.nan), index=vol.index)
    return pd.DataFrame({"regime_vol_20": vol, "regime_trend_60": trend, "regime_high_vol": high})


def regime_columns(features: pd.DataFrame, **kw) -> pd.DataFrame:
    """The regime frame broadcast to the rows of ``features`` (same index)."""
    reg = market_regime(features, **kw)
    d = features.index.get_level_values(0)
    return pd.DataFrame(reg.reindex(d).to_numpy(), index=features.index, columns=reg.columns)


def sector_neutral(excess: pd.Series, sectors: dict, min_group: int = 3) -> pd.Series:
    """``excess`` minus its (date, sector) median where the group has >= min_group labelled names."""
    syms = excess.index.get_level_values(1)
    sec = pd.Series(syms.map(lambda s: sectors.get(s)), index=excess.index).fillna("__unknown__")
    key = [excess.index.get_level_values(0), sec.to_numpy()]
    g = excess.groupby(key)
    med = g.transform("median")
    n = g.transform("count")
    ok = (n >= min_group) & (sec.to_numpy() != "__unknown__")
    return excess - med.where(ok, 0.0)
