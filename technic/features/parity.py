"""Batch/incremental parity: the central check of "one definition, two evaluators".

``incremental_features`` replays bars timestamp by timestamp through a
``FeatureEngine`` (each symbol's state sees only its own bars, in order, one
at a time) and collects every feature value; ``compare`` matches them with
``compute_features`` on the same data. With ``one_symbol_per_call`` each bar
is its own ``update_ts`` call (the per-symbol stage's path) and the market and
cross-sectional stages run once per timestamp over all its symbols (the
scoring stage's path).

Tolerance: a value mismatches when exactly one side is NaN, or when
``|a - b| > rtol * max(|a|, |b|, scale_f)``, where ``scale_f`` is the median
absolute value of feature ``f`` over the panel. The ``scale_f`` floor is what
makes the test meaningful for values that are zero up to rounding (a rolling
sum of returns that cancels to 1e-17 on one side and 0 on the other): the
incremental running sums carry rounding relative to the magnitude of their
terms, not of their result. ``rtol`` defaults to 1e-9 for every operator.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from . import registry as R
from .batch import _check_bars, compute_features, sectors_from
from .incremental import FeatureEngine
from .panel import date_slices

RTOL = 1e-9


def feed_side_inputs(engine: FeatureEngine, fundamentals=None, alt=None) -> None:
    """Queue fundamentals/alt rows; each applies at its point in time."""
    if fundamentals is not None and len(fundamentals):
        fields = [f for f in R.FUNDAMENTAL_INPUTS if f in fundamentals.columns]
        for rec in fundamentals[["symbol", "available_from", "period_end", *fields]].itertuples(index=False):
            engine.add_fundamental(rec[0], rec[1], rec[2], dict(zip(fields, rec[3:])))
    if alt is not None and len(alt):
        for sym, d, field, value in alt[["symbol", "date", "field", "value"]].itertuples(index=False):
            engine.add_alt(sym, d, field, value)


def incremental_features(bars: pd.DataFrame, fundamentals=None, securities=None, alt=None,
                         progress: Callable[[int], None] | None = None,
                         engine: FeatureEngine | None = None, one_symbol_per_call: bool = False) -> pd.DataFrame:
    """Every feature computed bar by bar by the incremental evaluator."""
    b = _check_bars(bars)
    engine = engine or FeatureEngine(sectors=sectors_from(securities), capacity=max(64, b["symbol"].nunique()))
    feed_side_inputs(engine, fundamentals, alt)
    dates = b["date"].to_numpy()
    syms = b["symbol"].to_numpy(dtype=object)
    cols = {f: b[f].to_numpy(np.float64) for f in R.BAR_FIELDS}
    out = np.empty((len(b), len(R.FEATURE_NAMES)))
    for a, z in date_slices(dates):
        if one_symbol_per_call:
            ts = np.vstack([engine.update_ts(dates[i], [syms[i]], {f: v[i:i + 1] for f, v in cols.items()})
                            for i in range(a, z)])
            mat = engine.cross_section(list(syms[a:z]), ts)
        else:
            names, mat = engine.process_timestamp(dates[a], list(syms[a:z]), {f: v[a:z] for f, v in cols.items()})
        out[a:z] = mat  # bars are sorted by (date, symbol) and so are the returned names
        if progress is not None:
            progress(z - a)
    frame = pd.DataFrame(out, columns=R.FEATURE_NAMES)
    frame.index = pd.MultiIndex.from_arrays([b["date"], b["symbol"]], names=["date", "symbol"])
    return frame


def compare(batch: pd.DataFrame, incr: pd.DataFrame, rtol: float = RTOL) -> dict:
    """Parity statistics of two feature frames with the same index and columns."""
    a = batch.to_numpy(np.float64)
    b = incr.reindex(index=batch.index, columns=batch.columns).to_numpy(np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    import warnings
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features (no alt input)
        scale = np.nanmedian(np.where(nan_a, np.nan, np.abs(a)), axis=0) if len(a) else np.zeros(a.shape[1])
    scale = np.nan_to_num(scale, nan=0.0)
    both = ~nan_a & ~nan_b
    err = np.where(both, np.abs(a - b), 0.0)
    denom = np.maximum(np.maximum(np.abs(np.where(both, a, 0)), np.abs(np.where(both, b, 0))), scale[None, :])
    with np.errstate(all="ignore"):
        rel = np.where(both & (denom > 0), err / denom, np.where(err > 0, np.inf, 0.0))
    mism = (nan_a != nan_b) | (rel > rtol)
    per_feature = {name: int(n) for name, n in zip(batch.columns, mism.sum(axis=0)) if n}
    worst = {name: float(v) for name, v in zip(batch.columns, rel.max(axis=0, initial=0.0))}
    return {
        "n_values": int(a.size),
        "n_non_nan": int(both.sum()),
        "n_mismatch": int(mism.sum()),
        "n_nan_mismatch": int((nan_a != nan_b).sum()),
        "max_abs_err": float(err.max(initial=0.0)),
        "max_rel_err": float(rel.max(initial=0.0)),
        "rtol": rtol,
        "features": int(a.shape[1]),
        "rows": int(a.shape[0]),
        "symbols": int(batch.index.get_level_values("symbol").nunique()),
        "mismatch_by_feature": per_feature,
        "worst_rel_err_by_feature": dict(sorted(worst.items(), key=lambda kv: -kv[1])[:10]),
    }


def run_parity(bars, fundamentals=None, securities=None, alt=None, rtol: float = RTOL,
               progress: Callable[[int], None] | None = None) -> dict:
    """Batch vs incremental on the same data: see ``compare`` for the fields."""
    batch = compute_features(bars, fundamentals, securities, alt)
    incr = incremental_features(bars, fundamentals, securities, alt, progress=progress)
    return compare(batch, incr, rtol)
