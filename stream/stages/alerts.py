"""Alert records (``schemas/alert.json``) with de-duplication by cool-down.

An alert's ``id`` is a hash of (type, symbol, feature, ts), so a re-emitted
alert (after a restart or redelivery) carries the same id. ``AlertGate``
suppresses repeats of the same (type, symbol, feature) within ``cooldown``
timestamps so that a persisting condition does not flood the topic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from stream.io.codecs import utc_now_iso

SEVERITIES = ("info", "warning", "critical")


def make_alert(type_: str, severity: str, metric: str, value, threshold, window, model_version: str | None,
               ts: str, message: str, symbol: str | None = None, feature: str | None = None) -> dict:
    ident = hashlib.sha256(f"{type_}|{symbol}|{feature}|{ts}".encode()).hexdigest()[:24]
    rec = {
        "id": ident, "type": type_, "severity": severity, "metric": metric,
        "value": None if value is None else float(value),
        "threshold": None if threshold is None else float(threshold),
        "window": window, "model_version": model_version or "none", "ts": ts,
        "emit_time": utc_now_iso(), "message": message,
    }
    if symbol is not None:
        rec["symbol"] = symbol
    if feature is not None:
        rec["feature"] = feature
    return rec


@dataclass
class AlertGate:
    """Cool-down: at most one alert per (type, symbol, feature) every ``cooldown`` timestamps."""

    cooldown: int = 20
    _last: dict = field(default_factory=dict)
    suppressed: int = 0

    def allow(self, key: tuple, step: int) -> bool:
        last = self._last.get(key)
        if last is not None and step - last < self.cooldown:
            self.suppressed += 1
            return False
        self._last[key] = step
        return True
