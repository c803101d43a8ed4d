"""Conventions of the (date, symbol) panels every evaluation function takes.

Predictions and labels are pandas objects indexed by a (date, symbol)
MultiIndex; the levels are found by name ("date", "symbol") or else by
position (0, 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def date_level(index: pd.MultiIndex):
    """Name of the date level of a (date, symbol) index (level 0 if unnamed)."""
    return "date" if "date" in (index.names or []) else 0


def symbol_level(index: pd.MultiIndex):
    """Name of the symbol level of a (date, symbol) index (level 1 if unnamed)."""
    return "symbol" if "symbol" in (index.names or []) else 1


def align(pred, label) -> pd.DataFrame:
    """Frame with columns p (pred) and y (label) on their common finite rows, sorted."""
    if isinstance(pred, pd.DataFrame):
        pred = pred.iloc[:, 0]
    if isinstance(label, pd.DataFrame):
        label = label.iloc[:, 0]
    df = pd.concat({"p": pred.astype(float), "y": label.astype(float)}, axis=1, join="inner")
    df = df[np.isfinite(df["p"]) & np.isfinite(df["y"])]
    return df.sort_index()
