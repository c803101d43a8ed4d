"""Logs an operator can live with: a broker outage is a few lines per interval, lifecycle at INFO."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from stream.service.logs import LOG_INTERVAL_S, RateLimitFilter, setup_logging


def _record(name, msg, args=(), level=logging.ERROR):
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_rate_limit_one_line_per_interval_per_message():
    clock = {"t": 0.0}
    f = RateLimitFilter(interval_s=10, clock=lambda: clock["t"])
    passed = []
    for i in range(100):                                   # ~32 lines a second for 3 s
        clock["t"] = i / 32
        r = _record("aiokafka", "Unable connect to node with id %s: %s", (0, f"err {i}"))
        if f.filter(r):
            passed.append(r)
    assert len(passed) == 1
    clock["t"] = 12.0
    r = _record("aiokafka", "Unable connect to node with id %s: %s", (0, "again"))
    assert f.filter(r) and "[99 similar message(s) suppressed" in r.getMessage()
    other = _record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", (0, "x"))
    assert f.filter(other)                                 # another message is not hidden by the first
    assert all(f.filter(_record("technic.worker", "producer failed, attempt %d", (i,))) for i in range(5))


def test_setup_logging_app_loggers_at_info(capsys):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging(as_json=False)
        logging.getLogger("technic.worker").info("catch-up done")
        logging.getLogger("faust.worker").info("chatty third-party info")
        err = capsys.readouterr().err
        assert "catch-up done" in err and "chatty" not in err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ("technic", "stream"):
            logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.broker
def test_broker_outage_is_not_a_wall_of_errors(tmp_path):
    """A real aiokafka consumer polling a stopped broker: ~40 ERROR records a second reach the
    logging system; through the worker's filter, each distinct message passes once per interval."""
    from aiokafka.errors import KafkaError

    from stream.io.broker import EmbeddedBroker
    from stream.io.kafka import new_consumer
    from stream.io.topics_config import topic_specs

    seen: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(record)

    cap = Capture(logging.WARNING)
    logging.getLogger("aiokafka").addHandler(cap)
    broker = EmbeddedBroker(tmp_path / "broker").start()
    spec = topic_specs(prefix="outage.")[0]
    broker.create_topics([spec])
    try:
        async def run():
            c = new_consumer(broker.bootstrap, spec.name, auto_offset_reset="earliest")
            await c.start()
            try:
                await c.getmany(timeout_ms=2000)
                broker.stop()
                seen.clear()
                t0 = time.time()
                while time.time() - t0 < 3:
                    try:
                        await c.getmany(timeout_ms=100)
                    except KafkaError:  # e.g. NodeNotReadyError from a position reset: keep polling
                        await asyncio.sleep(0.1)
            finally:
                try:
                    await c.stop()
                except (asyncio.CancelledError, KafkaError):  # aiokafka re-raises its cancelled fetch
                    pass
        asyncio.run(run())
    finally:
        logging.getLogger("aiokafka").removeHandler(cap)
        broker.stop()
    errors = [r for r in seen if r.levelno >= logging.ERROR]
    f = RateLimitFilter(LOG_INTERVAL_S)
    passed = [r for r in errors if f.filter(r)]
    kinds = {(r.name, str(r.msg)) for r in errors}
    print(f"\noutage, 3 s: {len(errors)} aiokafka ERROR records, {len(passed)} logged ({len(kinds)} kinds)")
    assert len(errors) >= 20          # the flood is real ...
    assert len(passed) == len(kinds) <= 5   # ... and the filter keeps one line per kind per interval
