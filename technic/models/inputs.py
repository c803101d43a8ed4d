"""What the models read, for a block of rows: one protocol for the batch panel and the stream.

An :class:`~technic.models.ensemble.Ensemble` reads, for the rows it fits or scores:

* ``tabular(rows, cols)``: per-date rank-gauss features (``preprocess.rank_gauss`` of each date's
  cross-section), the input of the tree and linear models;
* ``sequences(rows, cols, seq_len)``: per-symbol windows of those normalized rows, oldest first,
  current row last (the deep models' input, exactly ``deep.build_sequences``);
* ``factors(rows)``: the factor library's scores of those rows (``technic.factors``);
* ``dates(rows)``: per-row dates (bounds of each date's cross-section).

:class:`PanelInputs` serves a whole (date, symbol) panel (backtest, training); :class:`TimestampInputs`
serves ONE timestamp's cross-section (the stream's Scorer). Both normalize each date over every
symbol it has, so the same rows give bitwise identical inputs in batch and stream.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from technic.factors import FACTOR_NAMES, factor_inputs, factor_panel, factor_scores

from .preprocess import cross_sectional_transform, rank_gauss


class PanelInputs:
    """Inputs over a (date, symbol) feature panel sorted by date (normalized once, lazily per use)."""

    def __init__(self, features: pd.DataFrame, groups: np.ndarray | None = None, factor_names=FACTOR_NAMES,
                 sector_neutral: bool = False, passthrough: pd.DataFrame | None = None):
        """``passthrough``: extra columns (same index) appended WITHOUT normalization, e.g. the
        date-constant regime columns of ``models.regime`` (a per-date rank would map them to 0)."""
        if not features.index.is_monotonic_increasing:
            raise ValueError("PanelInputs needs a (date, symbol) panel sorted by date")
        self.index = features.index
        self.columns = list(features.columns)
        self.Z = cross_sectional_transform(features).to_numpy(np.float64)
        if passthrough is not None and len(passthrough.columns):
            self.Z = np.hstack([self.Z, passthrough.to_numpy(np.float64)])
            self.columns += list(passthrough.columns)
        self._col = {c: j for j, c in enumerate(self.columns)}
        self._dates = features.index.get_level_values(0).to_numpy()
        self._symbols = features.index.get_level_values(1).to_numpy()
        self.groups = np.full(len(features), -1, np.int64) if groups is None else np.asarray(groups, np.int64)
        self.factor_names = tuple(factor_names)
        have = all(f in self._col for f in factor_inputs(self.factor_names))
        self.F = (factor_panel(features, self.groups, self.factor_names, sector_neutral).to_numpy(np.float64)
                  if have and self.factor_names else None)

    def __len__(self) -> int:
        return len(self.index)

    def cols(self, names) -> np.ndarray:
        return np.array([self._col[n] for n in names], dtype=np.int64)

    def tabular(self, rows, names) -> np.ndarray:
        return self.Z[np.asarray(rows)][:, self.cols(names)]

    def tabular_frame(self, rows, names=None) -> pd.DataFrame:
        names = self.columns if names is None else list(names)
        return pd.DataFrame(self.tabular(rows, names), columns=names)

    def sequences(self, rows, names, seq_len: int) -> np.ndarray:
        from .deep import build_sequences
        return build_sequences(self.Z[:, self.cols(names)], self._symbols, np.asarray(rows), seq_len)

    def factors(self, rows) -> np.ndarray | None:
        return None if self.F is None else self.F[np.asarray(rows)]

    def dates(self, rows) -> np.ndarray:
        return self._dates[np.asarray(rows)]


class TimestampInputs:
    """Inputs of ONE timestamp: raw features ``X`` (k, p) in ``columns`` order, sector codes, and
    (for sequence models) ``history`` (k, >= seq_len, p): each symbol's last normalized rows."""

    def __init__(self, X, columns, groups=None, history=None, factor_names=FACTOR_NAMES,
                 sector_neutral: bool = False):
        self.X = np.asarray(X, dtype=np.float64)
        self.columns = list(columns)
        self._col = {c: j for j, c in enumerate(self.columns)}
        k = len(self.X)
        self.Z = rank_gauss(self.X) if k else self.X.copy()
        self.groups = np.full(k, -1, np.int64) if groups is None else np.asarray(groups, np.int64)
        self.history = history
        self.factor_names = tuple(factor_names)
        have = all(f in self._col for f in factor_inputs(self.factor_names))
        self.F = (factor_scores(self.X, self.columns, self.groups, self.factor_names, sector_neutral)
                  if have and self.factor_names else None)

    def __len__(self) -> int:
        return len(self.X)

    def cols(self, names) -> np.ndarray:
        return np.array([self._col[n] for n in names], dtype=np.int64)

    def tabular(self, rows, names) -> np.ndarray:
        return self.Z[np.asarray(rows)][:, self.cols(names)]

    def raw(self, rows, names) -> np.ndarray:
        return self.X[np.asarray(rows)][:, self.cols(names)]

    def sequences(self, rows, names, seq_len: int) -> np.ndarray:
        if self.history is None:
            raise ValueError(f"this model has sequence models: pass history of shape (k, >= {seq_len}, p)")
        H = np.asarray(self.history)[np.asarray(rows)][:, -seq_len:, :][:, :, self.cols(names)]
        return np.nan_to_num(H.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)

    def factors(self, rows) -> np.ndarray | None:
        return None if self.F is None else self.F[np.asarray(rows)]

    def dates(self, rows) -> np.ndarray:
        return np.zeros(len(np.asarray(rows)), dtype=np.int64)


def date_zscore(x: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """(x - date mean) / date std (ddof 0) over the finite values of each date (rows grouped by date,
    in any order); a date with fewer than 2 finite values or zero spread maps them to 0."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    dates = np.asarray(dates)
    if len(dates) and (dates == dates[0]).all():   # one timestamp (the stream): the same codes, no factorize
        codes = np.zeros(len(dates), dtype=np.intp)
    else:
        codes = pd.factorize(dates)[0]
    ok = np.isfinite(x)
    if not ok.any():
        return out
    n = np.bincount(codes[ok], minlength=codes.max() + 1)
    s = np.bincount(codes[ok], weights=x[ok], minlength=codes.max() + 1)
    mean = s / np.maximum(n, 1)
    d = np.where(ok, x - mean[codes], 0.0)
    ss = np.bincount(codes, weights=d * d, minlength=codes.max() + 1)
    sd = np.sqrt(ss / np.maximum(n, 1))
    good = ok & (sd[codes] > 0)
    out[good] = d[good] / sd[codes][good]
    out[ok & ~good] = 0.0
    return out
