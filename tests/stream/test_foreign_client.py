"""Any Kafka client can feed the scorer and read its scores: librdkafka (confluent-kafka) end to end.

Bars and fundamentals are produced with ``confluent_kafka.Producer`` (payloads written by hand with
``json.dumps``, keyed by symbol, per-symbol ``seq`` counted by the test: nothing of ``stream.tools.publisher``),
a real worker process scores them, and the scores are read back with ``confluent_kafka.Consumer``.
Every score must equal the batch path (``score_panel`` on ``compute_features``) as in the stream
parity tests. This is the README's "Publishing and consuming with any Kafka client" recipe.
"""

from __future__ import annotations

import json
import time

import pytest

from .test_pipeline import FIX, batch_scores, data  # noqa: F401 (fixture)

ck = pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.broker
N_DAYS = 60


def _produce(bootstrap: str, records) -> None:
    p = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
    for topic, key, value in records:
        p.produce(topic, key=key, value=value, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0 and not errors, errors


def _consume_all(bootstrap: str, topic: str, n: int, timeout_s: float = 120) -> list[dict]:
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"foreign-{time.time_ns()}",
                     "enable.auto.commit": False})
    meta = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in meta.partitions])
    out, deadline = [], time.time() + timeout_s
    try:
        while len({(v["symbol"], v["ts"]) for v in out}) < n and time.time() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            v = json.loads(msg.value())
            assert msg.key().decode() == v["symbol"]      # scores are keyed by symbol
            out.append(v)
    finally:
        c.close()
    return out


def test_confluent_kafka_producer_and_consumer_against_the_worker(broker, data, tmp_path, monkeypatch):  # noqa: F811
    from bench.soak import WorkerProc
    from stream.io.topics_config import create_topics, topic_name, topic_specs

    bars, fund, secs = data
    keep = sorted(bars["date"].unique())[:N_DAYS]
    bars = bars[bars["date"].isin(keep)].sort_values(["date", "symbol"]).reset_index(drop=True)
    prefix = f"fc{time.time_ns() % 10**9}."
    monkeypatch.setenv("TECHNIC_TOPIC_PREFIX", prefix)
    create_topics(broker.bootstrap, topic_specs())

    # reference data first (the worker reads it before any bar), then the worker, then the bars
    fund_recs = []
    for i, r in enumerate(fund.sort_values(["available_from", "symbol"]).itertuples(index=False)):
        fields = {k: (None if v != v else float(v)) for k, v in r._asdict().items()
                  if k not in ("symbol", "period_end", "available_from")}
        fund_recs.append((topic_name("fundamentals"), r.symbol.encode(), json.dumps(
            {"symbol": r.symbol, "period_end": str(r.period_end)[:10], "available_from": str(r.available_from)[:10],
             "seq": i, "fields": fields}).encode()))
    _produce(broker.bootstrap, fund_recs)
    worker = WorkerProc(broker.bootstrap, prefix, tmp_path, grace=2.0, securities=FIX / "securities_400d.csv").start()
    try:
        seq: dict[str, int] = {}
        bar_recs = []
        for r in bars.itertuples(index=False):
            s = seq[r.symbol] = seq.get(r.symbol, -1) + 1
            payload = {"volume": float(r.volume), "close": float(r.close), "low": float(r.low), "high": float(r.high),
                       "open": float(r.open), "seq": s, "ts": r.date.strftime("%Y-%m-%d"), "symbol": r.symbol}
            bar_recs.append((topic_name("bars"), r.symbol.encode(), json.dumps(payload, indent=1).encode()))
        _produce(broker.bootstrap, bar_recs)
        expect = batch_scores(bars, fund, secs)
        got = _consume_all(broker.bootstrap, topic_name("scores"), len(expect))
        h = worker.health()
    finally:
        worker.stop()
    scores = {(v["symbol"], v["ts"]): v["scores"]["5d"] for v in got}
    assert set(scores) == set(expect), (len(scores), len(expect))
    diff = max(abs(scores[k] - expect[k]) for k in expect)
    assert diff <= 1e-9, diff
    assert h["bars_applied"] == len(bars) and not h["deadletter"], h
    print(f"\nconfluent-kafka: {len(bar_recs)} bars in, {len(scores)} scores out, max |stream - batch| = {diff:.1e}")
