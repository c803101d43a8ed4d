"""Logging of the stream processes: JSON lines (default) or text, lifecycle at INFO, quiet outages.

* Technic's own loggers (``technic.*``, ``stream.*``) log lifecycle events (catch-up done, live
  ingest, model switches, stop) at INFO; everything else (Faust, aiokafka, ...) at WARNING.
* :class:`RateLimitFilter`: while a broker is down, aiokafka logs every failed connection,
  metadata refresh and fetch at ERROR, about 30 lines a second. The filter lets each distinct
  message (logger + message template) through once per ``interval_s`` (10 s) and appends how
  many like it were suppressed meanwhile, so an outage reads as one line per interval per
  kind of failure. The workers' own reconnect attempts log once per back-off step.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

#: seconds between two lines of the same aiokafka message
LOG_INTERVAL_S = 10.0
#: loggers whose records are rate-limited
RATE_LIMITED = ("aiokafka", "kafka")
APP_LOGGERS = ("technic", "stream")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ exception text)."""

    def format(self, record: logging.LogRecord) -> str:
        rec = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            rec["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(rec).decode()


class RateLimitFilter(logging.Filter):
    """At most one record per (logger, message template) every ``interval_s`` for the given loggers."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S, prefixes=RATE_LIMITED, clock=time.monotonic):
        super().__init__()
        self.interval_s = float(interval_s)
        self.prefixes = tuple(prefixes)
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        if n:
            record.msg = f"{record.msg} [{n} similar message(s) suppressed in the last {now - last:.0f} s]"
        return True


def setup_logging(as_json: bool = True, level: int = logging.WARNING, app_level: int = logging.INFO,
                  interval_s: float = LOG_INTERVAL_S) -> logging.Handler:
    """One stderr handler on the root logger (replacing any), with the rate limit; returns it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RateLimitFilter(interval_s))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in APP_LOGGERS:
        logging.getLogger(name).setLevel(app_level)
    return handler
