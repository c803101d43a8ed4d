"""Bar -> score latency: a fixed-bucket histogram with one observation per score emitted.

Each score's latency is the time from receiving its bar (the fetch that delivered it) to
the score being ready. ``observe`` takes all scores of one closed timestamp at once
(vectorized), so counting every score costs a few microseconds per timestamp and no memory
grows: the histogram's count equals the number of scores emitted (``technic_scores_out_total``).
"""

from __future__ import annotations

import numpy as np

#: seconds; upper bounds of the buckets (the last, +Inf, is implicit)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class LatencyHistogram:
    """Cumulative-ready bucket counts, sum and count of observed latencies (seconds)."""

    def __init__(self, buckets=LATENCY_BUCKETS):
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # last: above every bound
        self.total = 0.0
        self.n = 0

    def observe(self, seconds) -> None:
        x = np.asarray(seconds, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        if x.size:
            self.counts += np.bincount(np.searchsorted(self.bounds, x, side="left"), minlength=len(self.counts))
            self.total += float(x.sum())
            self.n += int(x.size)

    def buckets(self) -> list[tuple[str, int]]:
        """Prometheus ``le`` buckets: cumulative counts, +Inf last."""
        cum = np.cumsum(self.counts)
        return [(repr(float(b)), int(c)) for b, c in zip(self.bounds, cum[:-1])] + [("+Inf", int(cum[-1]))]
