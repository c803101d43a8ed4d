"""Technic: event-driven streaming scorer for equity alpha models.

`technic` holds the batch research code (data, features, labels, models,
evaluation, registry) that the `stream` package reuses unchanged.
"""

__version__ = "0.1.0"
