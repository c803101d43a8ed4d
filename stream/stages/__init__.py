"""Processing stages: admission, per-symbol state, scoring, checkpoints (no Kafka clients)."""
