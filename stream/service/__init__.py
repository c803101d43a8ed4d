"""Worker wiring: roles, ingest loops, timers, health/ready/metrics, Faust adapter."""
