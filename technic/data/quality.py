"""Data-quality report for daily bars, and the cleaning policy `clean_bars` applies.

`quality_report(bars)` counts each defect and keeps up to a few (symbol, date) examples:

=====================  ==================================================================
check                  definition
=====================  ==================================================================
nan_<col>              NaN in open / high / low / close / volume
nonpositive_price      any of open/high/low/close <= 0
high_lt_low            high < low
oc_outside_range       open or close outside [low, high] (rows where both bounds exist)
zero_volume            volume == 0
negative_volume        volume < 0
duplicate              a (symbol, date) that already appeared (first occurrence not counted)
stale                  OHLCV identical to the symbol's previous bar on an earlier date (NaN==NaN)
jump                   |close / prev_close - 1| > jump_threshold (default 0.4)
spike_revert           |r_t| > spike_threshold (0.1) and the next bar undoes more than
                       revert_fraction (70%) of the move: (c_t - c_t+1) / (c_t - c_t-1) > 0.7
gap                    a run of trading dates (dates present in the file for any symbol)
                       missing between a symbol's first and last bar; ``gap_days`` counts
                       the missing symbol-days
=====================  ==================================================================

Cleaning policy (``POLICY``; `technic.data.bars.clean_bars` applies it, nothing else):

* DROP the row: NaN or non-positive ``close``; negative ``volume``; a duplicate
  (symbol, date) -- the first remaining occurrence is kept (duplicates are resolved after
  the other drops, so a bad first copy does not shadow a good second one).
* BLANK (set to NaN, never invent a value): ``high`` and ``low`` of a row with
  high < low (we cannot tell which is wrong); a non-positive ``open``/``high``/``low``.
* KEEP as is: NaN open/high/low (features propagate NaN); zero volume (volume-based
  features guard their divisions and yield NaN); open/close outside [low, high].
* REPORT ONLY, never altered: one-day jumps, spike-and-revert bars, stale rows, gaps.
  We do not know the truth (a jump may be a genuine move or an unadjusted corporate
  action), so altering prices would invent data. Downstream code may mask them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["POLICY", "QualityReport", "quality_report", "apply_policy"]

POLICY: dict[str, str] = {
    "nan_close": "drop row",
    "nonpositive_close": "drop row",
    "negative_volume": "drop row",
    "duplicate": "drop row (keep first remaining occurrence)",
    "high_lt_low": "set high and low to NaN",
    "nonpositive_open_high_low": "set that cell to NaN",
    "nan_open_high_low": "keep (NaN)",
    "zero_volume": "keep",
    "oc_outside_range": "report only",
    "jump": "report only",
    "spike_revert": "report only",
    "stale": "report only",
    "gap": "report only",
}

_COLS = ("open", "high", "low", "close", "volume")
_N_EXAMPLES = 5


@dataclass
class QualityReport:
    n_rows: int
    n_symbols: int
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "n_rows": self.n_rows,
            "n_symbols": self.n_symbols,
            "counts": dict(self.counts),
            "examples": {k: [list(e) for e in v] for k, v in self.examples.items()},
            "params": dict(self.params),
            "actions": dict(self.actions),
        }

    def summary(self) -> str:
        w = max([len(k) for k in self.counts] + [len(k) for k in self.actions] + [5])
        lines = [f"bars: {self.n_rows:,} rows, {self.n_symbols} symbols",
                 f"{'check':<{w}}  {'count':>8}  examples (symbol date)"]
        for k, v in self.counts.items():
            ex = ", ".join(f"{s} {d}" for s, d in self.examples.get(k, [])[:3])
            lines.append(f"{k:<{w}}  {v:>8,}  {ex}")
        if self.actions:
            lines.append("cleaning actions:")
            for k, v in self.actions.items():
                lines.append(f"{k:<{w}}  {v:>8,}")
        return "\n".join(lines)


def _examples(bars: pd.DataFrame, mask) -> list[tuple[str, str]]:
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))[:_N_EXAMPLES]
    return [(str(bars["symbol"].iat[i]), pd.Timestamp(bars["date"].iat[i]).strftime("%Y-%m-%d"))
            for i in idx]


def _defect_masks(bars: pd.DataFrame, jump_threshold=0.4, spike_threshold=0.1,
                  revert_fraction=0.7) -> dict[str, np.ndarray]:
    """Row masks (aligned with ``bars`` positions) for each row-level check."""
    b = bars.reset_index(drop=True)
    o, h, l, c, v = (b[k].to_numpy(dtype="float64") for k in _COLS)
    m: dict[str, np.ndarray] = {}
    for k, arr in zip(_COLS, (o, h, l, c, v)):
        m[f"nan_{k}"] = np.isnan(arr)
    with np.errstate(invalid="ignore"):
        m["nonpositive_price"] = (o <= 0) | (h <= 0) | (l <= 0) | (c <= 0)
        m["high_lt_low"] = h < l
        m["oc_outside_range"] = (o < l) | (o > h) | (c < l) | (c > h)
        m["zero_volume"] = v == 0
        m["negative_volume"] = v < 0
    m["duplicate"] = b.duplicated(["symbol", "date"], keep="first").to_numpy()

    # per-symbol sequence (stable order by symbol, then date, then file order)
    order = np.lexsort((np.arange(len(b)), b["date"].to_numpy(), b["symbol"].to_numpy()))
    s = b.iloc[order]
    sym = s["symbol"].to_numpy()
    same_prev = np.zeros(len(s), dtype=bool)
    same_prev[1:] = sym[1:] == sym[:-1]
    same_next = np.zeros(len(s), dtype=bool)
    same_next[:-1] = same_prev[1:]
    vals = s[list(_COLS)].to_numpy(dtype="float64")
    prev = np.roll(vals, 1, axis=0)
    eq = (vals == prev) | (np.isnan(vals) & np.isnan(prev))
    dts = s["date"].to_numpy()
    new_day = np.ones(len(s), dtype=bool)
    new_day[1:] = dts[1:] != dts[:-1]
    stale = same_prev & new_day & eq.all(axis=1)
    cs = vals[:, 3]
    cp = np.where(same_prev, np.roll(cs, 1), np.nan)
    cn = np.where(same_next, np.roll(cs, -1), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cs / cp - 1.0
        jump = np.abs(r) > jump_threshold
        undone = (cs - cn) / (cs - cp)
        spike = (np.abs(r) > spike_threshold) & (undone > revert_fraction)
    for key, arr in (("stale", stale), ("jump", jump), ("spike_revert", spike)):
        out = np.zeros(len(b), dtype=bool)
        out[order] = arr
        m[key] = out
    return m


def _gaps(bars: pd.DataFrame):
    """(number of gap runs, missing symbol-days, examples (symbol, first missing date)).

    The trading calendar is the set of dates present in ``bars`` for any symbol.
    """
    cal = np.sort(bars["date"].dropna().unique())
    d = pd.DataFrame({"symbol": bars["symbol"].to_numpy(),
                      "p": np.searchsorted(cal, bars["date"].to_numpy())}).drop_duplicates()
    d = d.sort_values(["symbol", "p"], kind="mergesort")
    step = d.groupby("symbol", sort=False)["p"].diff().to_numpy()
    is_gap = step > 1
    sym = d["symbol"].to_numpy()[is_gap]
    first_missing = d["p"].to_numpy()[is_gap] - step[is_gap].astype(int) + 1
    ex = [(str(s_), pd.Timestamp(cal[p]).strftime("%Y-%m-%d"))
          for s_, p in zip(sym[:_N_EXAMPLES], first_missing[:_N_EXAMPLES])]
    return int(is_gap.sum()), int((step[is_gap] - 1).sum()), ex


def quality_report(bars: pd.DataFrame, *, jump_threshold: float = 0.4, spike_threshold: float = 0.1,
                   revert_fraction: float = 0.7) -> QualityReport:
    """Count every defect of canonical bars (see the module docstring). Alters nothing."""
    b = bars.reset_index(drop=True)
    masks = _defect_masks(b, jump_threshold, spike_threshold, revert_fraction)
    rep = QualityReport(n_rows=len(b), n_symbols=int(b["symbol"].nunique()),
                        params={"jump_threshold": jump_threshold, "spike_threshold": spike_threshold,
                                "revert_fraction": revert_fraction})
    for k, m in masks.items():
        rep.counts[k] = int(m.sum())
        rep.examples[k] = _examples(b, m)
    runs, missing, ex = _gaps(b)
    rep.counts["gap"] = runs
    rep.counts["gap_days"] = missing
    rep.examples["gap"] = ex
    return rep


def apply_policy(bars: pd.DataFrame, policy: str = "default"):
    """Apply ``POLICY`` to canonical bars; returns (clean bars, report with ``actions``)."""
    if policy not in ("default", "none"):
        from technic.errors import DataError
        raise DataError(f"clean_bars: unknown policy {policy!r}; expected 'default' or 'none'")
    b = bars.reset_index(drop=True)
    rep = quality_report(b)
    if policy == "none":
        return b.copy(), rep
    c = b["close"].to_numpy(dtype="float64")
    v = b["volume"].to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        drop_nan_close = np.isnan(c)
        drop_nonpos_close = c <= 0
        drop_neg_vol = (v < 0) & ~(drop_nan_close | drop_nonpos_close)
    dropped = drop_nan_close | drop_nonpos_close | drop_neg_vol
    out = b[~dropped]
    dup = out.duplicated(["symbol", "date"], keep="first").to_numpy()
    out = out[~dup].copy()
    h = out["high"].to_numpy(dtype="float64").copy()
    l = out["low"].to_numpy(dtype="float64").copy()
    with np.errstate(invalid="ignore"):
        hl = h < l
    h[hl] = np.nan
    l[hl] = np.nan
    out["high"], out["low"] = h, l
    blanked = 0
    for k in ("open", "high", "low"):
        x = out[k].to_numpy(dtype="float64").copy()
        with np.errstate(invalid="ignore"):
            bad = x <= 0
        blanked += int(bad.sum())
        x[bad] = np.nan
        out[k] = x
    rep.actions = {
        "dropped_nan_close": int(drop_nan_close.sum()),
        "dropped_nonpositive_close": int(drop_nonpos_close.sum()),
        "dropped_negative_volume": int(drop_neg_vol.sum()),
        "dropped_duplicate": int(dup.sum()),
        "blanked_high_lt_low": int(hl.sum()),
        "blanked_nonpositive_open_high_low": blanked,
        "rows_in": len(b),
        "rows_out": len(out),
    }
    return out.reset_index(drop=True), rep
