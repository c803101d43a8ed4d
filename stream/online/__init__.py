"""Online layer between batch retrains: delayed labels, River learners, drift detectors.

- ``labels.DelayedLabelBuffer``: joins what was predicted at t with the realized forward return
  once the symbol's bar h bars later arrives (bounded per-symbol rings, JSON state);
- ``learners.OnlineLearner``: per horizon a River ``StandardScaler | LinearRegression`` blend of the
  batch score and the model features, with exact JSON state (no pickle);
- ``drift``: ADWIN / Page-Hinkley (River's own detectors, JSON state), PSI vs the training deciles,
  rolling RankIC decay, dead-letter rate;
- ``layer.OnlineLayer``: the ``ScoringPipeline`` extension combining them (alerts with cool-down,
  ``retrain_requested`` after a severe drift alert).
"""

from stream.online.labels import DelayedLabelBuffer, Matured
from stream.online.layer import OnlineConfig, OnlineLayer

__all__ = ["DelayedLabelBuffer", "Matured", "OnlineConfig", "OnlineLayer"]
