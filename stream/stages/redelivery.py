"""What a bar with an already-seen ``seq`` is: an exact redelivery, a conflict, or a late bar.

The publisher numbers each symbol's bars (``seq``); the pipeline applies a bar only if its
``seq`` is above the symbol's last applied one. A record at or below it is one of three things,
and only the first is harmless:

* an **exact redelivery** (at-least-once delivery, a re-published file): same content as the
  bar applied under that ``seq`` -> skipped and counted;
* a **conflicting redelivery**: the same ``seq`` with different content (a producer bug, two
  producers, a corrected bar re-sent under its old number) -> dead-lettered, never silently
  dropped: the applied bar stays, the operator decides;
* a **late bar**: a ``seq`` that was never applied (it was missing when later bars arrived,
  which raised a ``data_gap`` alert) -> dead-lettered as out of order (its timestamp has passed).

:class:`SeqDigests` remembers a 64-bit digest of the content of each symbol's last ``window``
applied bars (two int64 per bar; 4,096 bars per symbol = 64 KiB). A ``seq`` older than that
window cannot be checked; it is counted as an exact redelivery and in ``unverified``.
"""

from __future__ import annotations

import numpy as np

EXACT, CONFLICT, NEVER_APPLIED, UNVERIFIED = "exact", "conflict", "never_applied", "unverified"
_MISSING = -1.0  # stands for a null price in the digest (prices are > 0, volume >= 0)


def bar_digest(t_ns: int, rec: dict) -> int:
    """Content digest of a validated bar: timestamp and OHLCV values (not their JSON spelling)."""
    vals = tuple(_MISSING if rec.get(k) is None else float(rec[k]) for k in ("open", "high", "low", "close", "volume"))
    return hash((int(t_ns),) + vals)


class SeqDigests:
    """Per symbol: (seq, digest) of the last ``window`` applied bars, seqs increasing."""

    def __init__(self, window: int = 4096):
        if int(window) < 1:
            raise ValueError(f"window must be >= 1 bar, got {window}")
        self.window = int(window)
        self._seq: dict[str, np.ndarray] = {}
        self._dig: dict[str, np.ndarray] = {}
        self._n: dict[str, int] = {}
        self.unverified = 0

    def add(self, symbol: str, seq: int, digest: int) -> None:
        """Record an applied bar (its ``seq`` is above every recorded one)."""
        n = self._n.get(symbol, 0)
        seqs = self._seq.get(symbol)
        if seqs is None:
            seqs = self._seq[symbol] = np.empty(min(64, self.window), np.int64)
            self._dig[symbol] = np.empty(len(seqs), np.int64)
        elif n == len(seqs):
            if n < self.window:      # grow (doubling, up to the window)
                size = min(2 * n, self.window)
                self._seq[symbol] = seqs = np.resize(seqs, size)
                self._dig[symbol] = np.resize(self._dig[symbol], size)
            else:                    # full: drop the older half (amortized O(1) per bar)
                drop = n - self.window // 2
                seqs[:n - drop] = seqs[drop:n].copy()
                self._dig[symbol][:n - drop] = self._dig[symbol][drop:n].copy()
                n -= drop
        seqs[n] = seq
        self._dig[symbol][n] = digest
        self._n[symbol] = n + 1

    def classify(self, symbol: str, seq: int, digest: int) -> str:
        """EXACT, CONFLICT, NEVER_APPLIED or UNVERIFIED for a ``seq`` at or below the last applied."""
        n = self._n.get(symbol, 0)
        if n == 0 or seq < self._seq[symbol][0]:
            self.unverified += 1
            return UNVERIFIED
        seqs = self._seq[symbol][:n]
        i = int(np.searchsorted(seqs, seq))
        if i >= n or seqs[i] != seq:
            return NEVER_APPLIED
        return EXACT if int(self._dig[symbol][i]) == digest else CONFLICT
