"""Long (date, symbol) rows <-> per-symbol bar-index panels.

The batch evaluator works on 2-D panels whose row ``k`` of column ``j`` is the
``k``-th bar of symbol ``j``: a rolling window of ``w`` rows is then exactly
``w`` bars of one symbol, as in the incremental evaluator, even when a symbol
starts late or skips days. ``PanelLayout`` maps long vectors (aligned with
bars sorted by date, then symbol) to panels and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class PanelLayout:
    symbols: np.ndarray      # (N,) sorted symbol names
    code: np.ndarray         # (R,) column of each long row
    k: np.ndarray            # (R,) bar index of each long row within its symbol
    L: int                   # longest history

    @classmethod
    def from_frame(cls, dates: pd.Series, symbols: pd.Series) -> "PanelLayout":
        """Build from long rows that are sorted by (date, symbol)."""
        cats = pd.Categorical(symbols)
        code = cats.codes.astype(np.int64)
        k = pd.Series(code).groupby(code).cumcount().to_numpy()
        L = int(k.max()) + 1 if len(k) else 0
        return cls(np.asarray(cats.categories, dtype=object), code, k, L)

    @property
    def shape(self) -> tuple[int, int]:
        return self.L, len(self.symbols)

    def to_panel(self, values: np.ndarray) -> np.ndarray:
        out = np.full(self.shape, np.nan)
        out[self.k, self.code] = values
        return out

    def to_long(self, panel: np.ndarray) -> np.ndarray:
        return np.asarray(panel)[self.k, self.code]


def date_slices(dates: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) row ranges of each distinct date in a date-sorted vector."""
    if len(dates) == 0:
        return []
    change = np.flatnonzero(dates[1:] != dates[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [len(dates)]])
    return list(zip(starts.tolist(), stops.tolist()))
