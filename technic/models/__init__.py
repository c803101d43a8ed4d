"""Models: gradient-boosted trees (``gbm``), baselines, per-date preprocessing, scoring API.

``scoring.load_scorer`` / ``scoring.Scorer`` is the contract the stream worker depends on.
"""
