"""Which bars the demo replays, so that every score it shows is out of sample.

The demo's model is trained on the first ``TRAIN_DAYS`` trading days (or is whatever the registry
already promotes; its manifest says up to which date it saw data). The replayed window starts
after that date plus a purge of the manifest's ``purge_bars`` (the furthest any training target
looked ahead: the longest target horizon + the execution lag), so no label the model was fitted on
overlaps a scored bar.

The features still need history: the longest lookback of the model's features (up to 253 bars).
The demo therefore publishes that many **warm-up** bars before the window, and the worker scores
only from the window's first timestamp on (``technic-stream worker --score-from``): the warm-up
bars build the per-symbol state exactly as the batch path would, and produce no score and no
drift statistic. (The alternative, scoring from a cold start, would serve features in their
warm-up, which the model never saw.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from technic.errors import TechnicError

TRAIN_DAYS = 504        # two years of trading days
TRAIN_SYMBOLS = 100
LABEL_LAG = 1           # technic.labels: returns run from close t+lag to t+lag+h


@dataclass(frozen=True)
class Window:
    train_end: np.datetime64      # last bar the model saw
    purge: int                    # trading days skipped after it
    warmup: np.ndarray            # dates published before the window, not scored
    dates: np.ndarray             # dates scored

    @property
    def first(self) -> str:
        return str(self.dates[0])[:10]

    def describe(self) -> str:
        return (f"scores {self.first}..{str(self.dates[-1])[:10]} are out of sample: the model saw data up to "
                f"{str(self.train_end)[:10]}, then {self.purge} trading days are skipped (label purge); "
                f"{len(self.warmup)} warm-up days before the window only build the features")


def replay_window(dates, train_end, days: int | None, purge: int, warmup: int) -> Window:
    """The scored dates (``days`` of them, None = all) and the warm-up dates before them."""
    dates = np.sort(np.asarray(dates, dtype="datetime64[ns]"))
    end = np.datetime64(train_end, "ns")
    start = int(np.searchsorted(dates, end, side="right")) + purge
    if start >= len(dates):
        raise TechnicError(f"the model saw data up to {str(end)[:10]}: no trading day is left after it and the "
                           f"{purge}-day label purge, so the demo has nothing out of sample to replay "
                           f"(point TECHNIC_REGISTRY at an empty directory to train a demo model)")
    stop = len(dates) if not days else min(len(dates), start + days)
    return Window(train_end=end, purge=purge, warmup=dates[max(0, start - warmup):start], dates=dates[start:stop])


def training_dates(dates) -> tuple[np.datetime64, np.datetime64]:
    """First and last date of the demo model's training period: the first ``TRAIN_DAYS`` days
    (the first half of a shorter history)."""
    dates = np.sort(np.asarray(dates, dtype="datetime64[ns]"))
    return dates[0], dates[max(1, min(TRAIN_DAYS, len(dates) // 2)) - 1]
