"""Per-symbol ring of normalized feature rows, for sequence models.

Sequence models (LSTM/Transformer in the bundle, ``Scorer.seq_len > 0``) read each symbol's
last ``seq_len`` rows normalized against their own timestamp's cross-section. The ring keeps
``length`` float32 rows per symbol slot, appended at every scored timestamp; it grows (keeping
every row it holds) when a model with a longer window is loaded.
"""

from __future__ import annotations

import numpy as np

from technic.models.preprocess import rank_gauss


class FeatureHistory:
    def __init__(self, n_features: int, length: int, capacity: int):
        self.hist = np.full((capacity, length, n_features), np.nan, dtype=np.float32)
        self.cnt = np.zeros(capacity, np.int64)

    @property
    def length(self) -> int:
        return self.hist.shape[1]

    def reserve(self, length: int) -> None:
        """Widen the ring to ``length`` rows per symbol, keeping every row it holds."""
        if length <= self.length:
            return
        old, L = self.hist, self.length
        self.hist = np.full((old.shape[0], length, old.shape[2]), np.nan, np.float32)
        for back in range(min(L, length)):           # rows `back` bars ago, per symbol
            ok = self.cnt - 1 - back >= 0
            a = (self.cnt[ok] - 1 - back)
            self.hist[np.flatnonzero(ok), a % length] = old[np.flatnonzero(ok), a % L]

    def push(self, slots, feats: np.ndarray, capacity: int) -> None:
        """Append each symbol's row of this timestamp, normalized against this timestamp's
        cross-section (``rank_gauss``, the training transform; column by column, so any model's
        feature subset reads the same values) and stored as float32 (what the models read)."""
        feats = rank_gauss(feats)
        slots = np.asarray(slots, dtype=np.intp)
        if capacity > self.hist.shape[0]:
            pad = capacity - self.hist.shape[0]
            self.hist = np.concatenate([self.hist, np.full((pad,) + self.hist.shape[1:], np.nan, np.float32)])
            self.cnt = np.concatenate([self.cnt, np.zeros(pad, np.int64)])
        L = self.length
        self.hist[slots, self.cnt[slots] % L] = feats
        self.cnt[slots] += 1

    def window(self, slot_of, names, cols, seq_len: int) -> np.ndarray:
        """(k, seq_len, len(cols)) last normalized rows per symbol, oldest first, current last, NaN-padded."""
        self.reserve(seq_len)
        L = self.length
        slots = np.array([slot_of[s] for s in names], dtype=np.intp)
        cnt = self.cnt[slots]
        back = np.arange(seq_len - 1, -1, -1)              # seq_len-1 ... 0 bars ago
        idx = cnt[:, None] - 1 - back[None, :]              # absolute bar numbers
        rows = self.hist[slots[:, None], idx % L][:, :, cols]
        rows[idx < 0] = np.nan
        return rows
