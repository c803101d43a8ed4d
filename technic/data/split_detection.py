"""Stock splits seen in annual share counts, when no splits file is given.

A *step* is a pair of consecutive annual rows of one symbol that both have a positive,
finite share count (rows without one are skipped). For each step we observe

* ``share_ratio``  = shares(after) / shares(before),
* ``eps_ratio``    = eps(after) / eps(before),
* ``net_income_ratio`` = net income(after) / net income(before).

A step is a **split** (``verdict == "split"``) when all of these hold:

1. ``share_ratio`` is within a factor ``RATIO_TOLERANCE`` (1.1) of exactly one ratio of
   ``DETECTABLE_RATIOS`` (2, 3, 4, 5, 7, 8, 10 and the reverse 1/2 ... 1/10); that ratio is
   the detected one. Why 1.1: the report's count is an annual (weighted-average) estimate
   that also moves with buybacks and issuance; on the dev data about 90 % of ordinary
   year-over-year changes (those below 1.8x) are within 10 %, while the gaps between the
   detectable ratios are wider than 2 x 10 % except between 7 and 8, where a share ratio
   within 10 % of both (7.27 to 7.7) is ambiguous and is not adjusted.
2. EPS moved against the share count by more than the same tolerance (``eps_ratio`` <= 1/1.1
   for a forward split, >= 1.1 for a reverse one) and kept its sign. Since shares = net
   income / EPS in the source, this also says that net income did not jump by the share
   factor, as it would after an acquisition paid in stock.
3. net income kept its sign and moved by less than ``EARNINGS_BAND`` (2.5x) either way
   (earnings change from year to year, so the band is loose: about 90 % of the dev data's
   same-sign year-over-year changes are within it).
4. neither neighbouring step of the symbol is an unexplained jump: a split moves the count
   from one stable level to another, while a series that jumps again next to the candidate
   has an unreliable EPS (e.g. a row with a quarterly EPS).

Ratios 3/2, 4/3 and 5/4 are not detected: annual counts move that much through buybacks,
issuance and mergers, and EPS then moves inversely too (on the dev data 22 steps within 10 %
of these ratios pass tests 2-3 and none is a known split; e.g. VZ 2014 after the Vodafone
deal, WEC 2015 after buying Integrys).
A splits file may still list them.

A step whose share ratio is >= ``JUMP_FACTOR`` (1.8) or <= 1/1.8 and that is not a split is
**unexplained** (``verdict == "unexplained"``, ``reason`` says which test failed); the
adjustment leaves it as reported. Every other step is ``ordinary``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["DETECTABLE_RATIOS", "RATIO_TOLERANCE", "EARNINGS_BAND", "JUMP_FACTOR", "STEP_COLUMNS",
           "share_count_steps", "split_evidence", "classify_steps"]

_FORWARD = (2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0)
DETECTABLE_RATIOS: tuple[float, ...] = _FORWARD + tuple(1.0 / r for r in _FORWARD)
RATIO_TOLERANCE = 1.1
EARNINGS_BAND = 2.5
JUMP_FACTOR = 1.8

STEP_COLUMNS = ("symbol", "period_before", "period_after", "share_ratio", "eps_ratio", "net_income_ratio")


def share_count_steps(fund: pd.DataFrame) -> pd.DataFrame:
    """Consecutive (per symbol, by period end) rows with a positive finite share count.

    ``fund``: canonical fundamentals (``symbol``, ``period_end``, ``shares``, ``eps``,
    ``net_income``). Returns ``STEP_COLUMNS``, one row per step, sorted by symbol and period.
    """
    f = fund[["symbol", "period_end", "shares", "eps", "net_income"]]
    sh = f["shares"].to_numpy(dtype="float64")
    f = f[np.isfinite(sh) & (sh > 0)].sort_values(["symbol", "period_end"], kind="mergesort")
    prev = f.groupby("symbol", sort=False).shift(1)
    has_prev = prev["period_end"].notna().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame({
            "symbol": f["symbol"].to_numpy()[has_prev],
            "period_before": prev["period_end"].to_numpy()[has_prev],
            "period_after": f["period_end"].to_numpy()[has_prev],
            "share_ratio": (f["shares"] / prev["shares"]).to_numpy()[has_prev],
            "eps_ratio": (f["eps"] / prev["eps"]).to_numpy()[has_prev],
            "net_income_ratio": (f["net_income"] / prev["net_income"]).to_numpy()[has_prev],
        })
    return out.astype({"period_before": "datetime64[ns]", "period_after": "datetime64[ns]"})


def split_evidence(share_ratio: float, eps_ratio: float, net_income_ratio: float, ratio: float) -> str:
    """Empty string when a step with these ratios confirms a split of ``ratio`` (tests 1-3 of
    the module docstring), else the reason it does not."""
    tol = math.log(RATIO_TOLERANCE)
    if not abs(math.log(share_ratio / ratio)) <= tol:
        return f"share ratio {share_ratio:.3g} is not within a factor {RATIO_TOLERANCE:g} of {_fmt(ratio)}"
    if not (np.isfinite(eps_ratio) and eps_ratio > 0):
        return "EPS missing or changed sign"
    if not (np.isfinite(net_income_ratio) and net_income_ratio > 0):
        return "net income missing or changed sign"
    moved = -math.log(eps_ratio) * math.copysign(1.0, math.log(ratio))
    if not moved >= tol - 1e-12:
        return f"EPS did not move against the share count (EPS x{eps_ratio:.3g})"
    if not abs(math.log(net_income_ratio)) <= math.log(EARNINGS_BAND):
        return f"net income moved x{net_income_ratio:.3g} (outside a factor {EARNINGS_BAND:g})"
    return ""


def _fmt(r: float) -> str:
    return f"1/{1 / r:.3g}" if r < 1 else f"{r:.3g}"


def _nearby(share_ratio: float) -> list[float]:
    tol = math.log(RATIO_TOLERANCE)
    return [r for r in DETECTABLE_RATIOS if abs(math.log(share_ratio / r)) <= tol]


def _local_verdict(q: float, e: float, n: float) -> tuple[str, float, str]:
    """(verdict, ratio, reason) from tests 1-3 only."""
    jump = abs(math.log(q)) >= math.log(JUMP_FACTOR)
    near = _nearby(q)
    if len(near) > 1:
        return "unexplained", math.nan, f"share ratio {q:.3g} is ambiguous ({' or '.join(map(_fmt, near))})"
    if not near:
        return (("unexplained", math.nan, f"share ratio {q:.3g} is not near a common split ratio")
                if jump else ("ordinary", math.nan, ""))
    why = split_evidence(q, e, n, near[0])
    if not why:
        return "split", near[0], ""
    return ("unexplained", math.nan, why) if jump else ("ordinary", math.nan, "")


def classify_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """``steps`` (from :func:`share_count_steps`) with ``ratio`` (the detected split ratio, NaN
    unless a split), ``verdict`` (split / unexplained / ordinary) and ``reason``."""
    out = steps.reset_index(drop=True).copy()
    local = [_local_verdict(q, e, n) for q, e, n in
             zip(out["share_ratio"], out["eps_ratio"], out["net_income_ratio"])]
    verdict = [v for v, _, _ in local]
    ratio = [r for _, r, _ in local]
    reason = [w for _, _, w in local]
    sym = out["symbol"].tolist()
    final = list(verdict)
    for i, v in enumerate(verdict):
        if v != "split":
            continue
        erratic = [j for j in (i - 1, i + 1)
                   if 0 <= j < len(sym) and sym[j] == sym[i] and verdict[j] == "unexplained"]
        if erratic:
            j = erratic[0]
            final[i], ratio[i] = "unexplained", math.nan
            reason[i] = (f"next to another unexplained jump (x{out['share_ratio'].iat[j]:.3g} between "
                         f"{out['period_before'].iat[j]:%Y-%m-%d} and {out['period_after'].iat[j]:%Y-%m-%d})")
    out["ratio"] = np.asarray(ratio, dtype="float64")
    out["verdict"] = final
    out["reason"] = reason
    return out
