"""Share counts and per-share fields on the price basis of the bars, before any ratio is formed.

Valuation features multiply the bar's close by the report's share count. The two must be on
the same share basis, or a stock split scales market cap, E/P, B/P ... by the split ratio.

**Adjusted bars** (``price_basis="adjusted"``, the default; the Kaggle/IEX dev bars are
split-adjusted as of their download): ``adj_p(t) = raw_p(t) / C(t)`` with ``C(t)`` the product
of the ratios of the splits after ``t``. A report whose count is on the basis of date ``b``
(its period end, as filed) gives the true market cap at ``t`` as
``raw_p(t) x raw_shares = adj_p(t) x shares x C(b)``. So every report's ``shares`` is
multiplied, and its per-share fields (``PER_SHARE_FIELDS``: ``eps``) divided, by the product
of the ratios of the splits its basis does not yet reflect: one constant factor per row, the
same for every bar. This uses no information beyond what the adjusted price series already
embeds -- those prices were divided by the same future ratios -- and the product
``adj_p x shares`` equals the market cap known at ``t``.

**Raw bars** (``price_basis="raw"``, as traded): the factor is the product of the ratios of
the splits between the report's basis and the bar date, so it changes at each split date.
The frame then gets, for each split that falls while a report is the latest visible one, a
copy of that report visible from the split date with the new factor: the point-in-time join
and the stream's engine (latest ``available_from`` wins) pick it up with no change. Raw bars
need a splits file: from annual reports alone the split date is not known point in time.

**Which rows already reflect a split.** Without a splits file, the detected splits
(:mod:`technic.data.split_detection`) are where the share count stepped: rows up to the step
are multiplied. With a splits file, each listed split (date ``d``, ratio ``r``) is placed by
the data when the data shows it: a step between a row ending before ``d`` and one ending at
most a year before ``d`` or later, whose share count moved by ``r`` with EPS confirming,
marks the change of basis there (``how="share-count step"``) -- vendors restate the latest
rows after a split, e.g. EW's 2015 row in the dev data is already on the basis of its
2016-05 split. A step straddling ``d`` with no change of count means the rows were restated
(``"already restated"``: nothing to do). Otherwise rows ending before ``d`` are multiplied
(``"period end"``). After a splits file is applied, remaining jumps are reported as
unexplained (none is adjusted): the file is authoritative, the detector only reports.

Point in time: with adjusted bars, detecting a split from a later report and rescaling earlier
ones is no look-ahead beyond the prices' own (the product price x shares is the market cap
known at the bar). With raw bars the factor at a bar uses only splits dated on or before it;
a row's basis is read from the file as it stands, so a row the vendor restated later is
treated on its restated basis (exact for the values, point in time only if the file is).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from technic.data.split_detection import RATIO_TOLERANCE, classify_steps, share_count_steps, split_evidence
from technic.data.split_report import SplitReport
from technic.errors import TechnicError

__all__ = ["PRICE_BASES", "SHARE_COUNT_FIELDS", "PER_SHARE_FIELDS", "split_consistent"]

PRICE_BASES = ("adjusted", "raw")
SHARE_COUNT_FIELDS = ("shares",)
PER_SHARE_FIELDS = ("eps",)

#: how far before a split the data may place its change of basis (restated latest rows)
_RESTATED_WINDOW = pd.Timedelta(days=366)
_EVIDENCE = ("period_before", "period_after", "share_ratio", "eps_ratio", "net_income_ratio")
#: basis_from of a split every row already reflects (before any period end)
_ALL_ROWS = pd.Timestamp("1800-01-01")


def _basis_from_detection(classified: pd.DataFrame) -> pd.DataFrame:
    """Detected splits: rows with period_end >= basis_from already reflect the split."""
    s = classified[classified["verdict"] == "split"]
    out = s[["symbol", "ratio", *_EVIDENCE]].copy()
    out.insert(1, "date", pd.NaT)
    out["basis_from"] = s["period_after"].to_numpy()
    out["how"] = "detected"
    return out.reset_index(drop=True)


def _place(split, steps: pd.DataFrame) -> tuple[pd.Timestamp, str, dict]:
    """(basis_from, how, evidence) of one listed split, from the symbol's steps."""
    d, r = split["date"], float(split["ratio"])
    none = {k: None for k in _EVIDENCE}
    if steps.empty or abs(math.log(r)) <= 2 * math.log(RATIO_TOLERANCE):
        return d, "period end", none  # too small a ratio for the data to show it
    window = steps[(steps["period_before"] < d) & (steps["period_after"] >= d - _RESTATED_WINDOW)]
    ok = [i for i, s in window.iterrows()
          if not split_evidence(s["share_ratio"], s["eps_ratio"], s["net_income_ratio"], r)]
    if ok:
        best = min(ok, key=lambda i: (window.at[i, "period_after"] < d, abs(window.at[i, "period_after"] - d)))
        step = window.loc[best]
        return step["period_after"], "share-count step", {k: step[k] for k in _EVIDENCE}
    straddle = steps[(steps["period_before"] < d) & (steps["period_after"] >= d)]
    if len(straddle):
        step = straddle.iloc[0]
        ev = {k: step[k] for k in _EVIDENCE}
        if abs(math.log(step["share_ratio"])) <= math.log(RATIO_TOLERANCE):
            return _ALL_ROWS, "already restated", ev
        return d, "period end", ev
    return d, "period end", none


def _basis_from_file(fund: pd.DataFrame, splits: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    known = set(fund["symbol"])
    rows = []
    by_symbol = {s: g for s, g in steps.groupby("symbol", sort=False)}
    for sp in splits[splits["symbol"].isin(known)].to_dict("records"):
        basis_from, how, ev = _place(sp, by_symbol.get(sp["symbol"], steps.iloc[:0]))
        rows.append({"symbol": sp["symbol"], "date": sp["date"], "ratio": float(sp["ratio"]), **ev,
                     "basis_from": basis_from, "how": how})
    cols = ["symbol", "date", "ratio", *_EVIDENCE, "basis_from", "how"]
    out = pd.DataFrame(rows, columns=cols)
    return out.astype({"date": "datetime64[ns]", "period_before": "datetime64[ns]",
                       "period_after": "datetime64[ns]", "ratio": "float64", "share_ratio": "float64",
                       "eps_ratio": "float64", "net_income_ratio": "float64"})


def _adjusted_factor(fund: pd.DataFrame, basis: pd.DataFrame) -> np.ndarray:
    """Per row: product of the ratios of the splits its basis does not reflect."""
    factor = np.ones(len(fund))
    sym = fund["symbol"].to_numpy()
    pe = fund["period_end"].to_numpy()
    for s in basis.itertuples(index=False):
        factor[(sym == s.symbol) & (pe < pd.Timestamp(s.basis_from).to_datetime64())] *= s.ratio
    return factor


def _raw_factor(period_end, t, splits) -> float:
    """Factor for a report (period end) seen at raw bar date ``t``."""
    f = 1.0
    for d, r, basis_from in splits:
        reflected = period_end >= basis_from
        if d <= t and not reflected:
            f *= r
        elif d > t and reflected:
            f /= r
    return f


def _raw_rows(fund: pd.DataFrame, basis: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows (with a copy per split date that falls while a row is the visible one) and factors."""
    if basis.empty:
        return fund, np.ones(len(fund))
    by_sym = {s: list(zip(g["date"], g["ratio"], g["basis_from"])) for s, g in basis.groupby("symbol", sort=False)}
    parts, factors = [], []
    for sym, g in fund.groupby("symbol", sort=False):
        sp = by_sym.get(sym)
        if not sp:
            parts.append(g)
            factors.append(np.ones(len(g)))
            continue
        g = g.sort_values(["available_from", "period_end"], kind="mergesort")
        rows = [g]
        f = [_raw_factor(p, a, sp) for p, a in zip(g["period_end"], g["available_from"])]
        af = g["available_from"].to_numpy()
        # the visible row from each available_from on: the last of its ties (latest period end)
        last = [i for i in range(len(g)) if i + 1 == len(g) or af[i + 1] != af[i]]
        for k, i in enumerate(last):
            start = g["available_from"].iat[i]
            end = g["available_from"].iat[last[k + 1]] if k + 1 < len(last) else pd.Timestamp.max
            for d in sorted({d for d, _, _ in sp if start < d < end}):
                copy = g.iloc[[i]].copy()
                copy["available_from"] = d
                rows.append(copy)
                f.append(_raw_factor(g["period_end"].iat[i], d, sp))
        parts.append(pd.concat(rows))
        factors.append(np.asarray(f))
    return pd.concat(parts), np.concatenate(factors)


def _apply(fund: pd.DataFrame, factor: np.ndarray) -> pd.DataFrame:
    out = fund.copy()
    for c in SHARE_COUNT_FIELDS:
        if c in out.columns:
            out[c] = out[c].to_numpy(dtype="float64") * factor
    for c in PER_SHARE_FIELDS:
        if c in out.columns:
            out[c] = out[c].to_numpy(dtype="float64") / factor
    return out


def _jumps(classified: pd.DataFrame, *, after_file: bool) -> pd.DataFrame:
    if not after_file:
        return classified[classified["verdict"] == "unexplained"].copy()
    j = classified[classified["verdict"] != "ordinary"].copy()
    split_like = j["verdict"] == "split"
    j.loc[split_like, "reason"] = [f"looks like a split of {r:.4g} that the splits file does not list"
                                   for r in j.loc[split_like, "ratio"]]
    return j


def split_consistent(fund: pd.DataFrame, splits: pd.DataFrame | None = None, *,
                     price_basis: str = "adjusted") -> tuple[pd.DataFrame, SplitReport]:
    """Fundamentals with ``shares`` and ``eps`` on ``price_basis``, and what was done.

    ``fund``: canonical, as-reported fundamentals; ``splits``: canonical splits
    (:func:`technic.data.splits.load_splits`) or None to detect them from share counts.
    Row order is kept (raw basis: sorted by symbol, period end, available_from).
    """
    if price_basis not in PRICE_BASES:
        raise TechnicError(f"price basis must be one of {', '.join(PRICE_BASES)}, got {price_basis!r}")
    if price_basis == "raw" and splits is None:
        raise TechnicError("price basis 'raw' needs a splits file (--splits): the date of a split "
                           "cannot be known point in time from annual reports")
    steps = share_count_steps(fund)
    if splits is None:
        classified = classify_steps(steps)
        basis = _basis_from_detection(classified)
        unexplained = _jumps(classified, after_file=False)
        source, without = "detected from share counts", 0
    else:
        basis = _basis_from_file(fund, splits, steps)
        residual = _apply(fund, _adjusted_factor(fund, basis))
        unexplained = _jumps(classify_steps(share_count_steps(residual)), after_file=True)
        source = f"from {splits.attrs.get('source', 'the splits frame')}"
        without = int((~splits["symbol"].isin(set(fund["symbol"]))).sum())
    if price_basis == "adjusted":
        out = _apply(fund, _adjusted_factor(fund, basis))
    else:
        rows, factor = _raw_rows(fund, basis)
        out = _apply(rows, factor).sort_values(["symbol", "period_end", "available_from"], kind="mergesort")
        out = out.reset_index(drop=True)
    basis = basis.assign(rows_adjusted=[int(((fund["symbol"] == s.symbol) & (fund["period_end"] < s.basis_from)
                                             ).sum()) for s in basis.itertuples(index=False)])
    report = SplitReport.from_frames(source, price_basis, basis, unexplained, without)
    return out, report
