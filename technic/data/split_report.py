"""What the split adjustment of the fundamentals did: the splits applied and the share-count
jumps it left as reported. Built by :mod:`technic.data.split_adjustment`, printed by
``technic data quality --fundamentals F [--splits S]`` (text or JSON)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["SplitReport"]


def _cell(v):
    if isinstance(v, pd.Timestamp) or hasattr(v, "strftime"):
        return None if pd.isna(v) else pd.Timestamp(v).strftime("%Y-%m-%d")
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    return v


def _records(df: pd.DataFrame, columns) -> list[dict]:
    return [{c: _cell(r[c]) for c in columns} for r in df.to_dict("records")]


def _num(v, fmt=".3g") -> str:
    return "-" if v is None else format(v, fmt)


@dataclass
class SplitReport:
    """``applied``: one dict per split applied (symbol, date or None when detected, ratio, how,
    the step that shows it: period_before, period_after, share_ratio, eps_ratio,
    net_income_ratio, and rows_adjusted). ``unexplained``: share-count jumps (>= 1.8x or
    <= 1/1.8 between consecutive rows) left as reported, with the reason."""

    source: str
    price_basis: str
    applied: list[dict] = field(default_factory=list)
    unexplained: list[dict] = field(default_factory=list)
    splits_without_fundamentals: int = 0

    APPLIED_COLUMNS = ("symbol", "date", "ratio", "how", "period_before", "period_after",
                       "share_ratio", "eps_ratio", "net_income_ratio", "rows_adjusted")
    UNEXPLAINED_COLUMNS = ("symbol", "period_before", "period_after", "share_ratio", "eps_ratio",
                           "net_income_ratio", "reason")

    @classmethod
    def from_frames(cls, source: str, price_basis: str, applied: pd.DataFrame, unexplained: pd.DataFrame,
                    splits_without_fundamentals: int = 0) -> "SplitReport":
        return cls(source, price_basis, _records(applied, cls.APPLIED_COLUMNS),
                   _records(unexplained, cls.UNEXPLAINED_COLUMNS), int(splits_without_fundamentals))

    def to_dict(self) -> dict:
        return {"source": self.source, "price_basis": self.price_basis,
                "n_applied": len(self.applied), "n_unexplained": len(self.unexplained),
                "applied": list(self.applied), "unexplained": list(self.unexplained),
                "splits_without_fundamentals": self.splits_without_fundamentals}

    def summary(self) -> str:
        lines = [f"fundamentals: share counts and EPS on the {self.price_basis} price basis; splits "
                 f"{self.source}: {len(self.applied)} applied, {len(self.unexplained)} unexplained "
                 f"share-count jumps left as reported"]
        if self.splits_without_fundamentals:
            lines.append(f"({self.splits_without_fundamentals} listed splits have no fundamentals rows)")
        if self.applied:
            lines.append(f"{'symbol':<7} {'split date':<10}  {'ratio':>6}  {'before':<10}  {'after':<10}  "
                         f"{'shares x':>8}  {'eps x':>7}  {'NI x':>6}  rows  how")
            for a in self.applied:
                lines.append(f"{a['symbol']:<7} {a['date'] or '-':<10}  {_num(a['ratio'], '.4g'):>6}  "
                             f"{a['period_before'] or '-':<10}  {a['period_after'] or '-':<10}  "
                             f"{_num(a['share_ratio']):>8}  {_num(a['eps_ratio']):>7}  "
                             f"{_num(a['net_income_ratio']):>6}  {a['rows_adjusted']:>4}  {a['how']}")
        if self.unexplained:
            lines.append("unexplained share-count jumps (left as reported):")
            lines.append(f"{'symbol':<7} {'before':<10}  {'after':<10}  {'shares x':>8}  {'eps x':>7}  "
                         f"{'NI x':>6}  reason")
            for u in self.unexplained:
                lines.append(f"{u['symbol']:<7} {u['period_before']:<10}  {u['period_after']:<10}  "
                             f"{_num(u['share_ratio']):>8}  {_num(u['eps_ratio']):>7}  "
                             f"{_num(u['net_income_ratio']):>6}  {u['reason']}")
        return "\n".join(lines)
