"""Prometheus metrics and readiness, in process (no broker): the exposition parses and every
value equals the pipeline's / router's own counters."""

import orjson
from prometheus_client.parser import text_string_to_metric_families

from stream.service.metrics import LATENCY_BUCKETS, WorkerMetrics, readiness, render
from stream.stages.models import ModelSource
from stream.stages.pipeline import PipelineConfig, ScoringPipeline
from stream.tools.publisher import bar_records
from stream.io.topics_config import topic_name
from stream.service.router import Router

from .test_pipeline import LinearScorer, data  # noqa: F401 (fixture)


def _samples(text: bytes) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _drive(data, n=3000, extra=()):
    bars, fund, secs = data
    recs = list(bar_records(bars))[:n]
    p = ScoringPipeline(ModelSource(None, scorer=LinearScorer()), sectors=secs, config=PipelineConfig(grace_s=1e9))
    r = Router(p)
    topic = topic_name("bars")
    for off, (k, v) in enumerate([rec[1:] for rec in recs] + [(None, x) for x in extra]):
        r.handle(topic, 0, off, k, v)
    r.handle(topic, 0, 5, *recs[5][1:])  # an already handled offset: skipped by the ledger
    p.flush()
    return p, r, recs


def test_metrics_equal_pipeline_counters(data):  # noqa: F811
    bad = [b"{nope", orjson.dumps({"symbol": "AAPL"}), orjson.dumps({"symbol": "A", "ts": "2017-01-01", "seq": 0,
                                                                      "close": 1.0, "volume": 1.0, "high": 1.0,
                                                                      "low": 2.0})]
    p, r, recs = _drive(data, extra=bad)
    m = WorkerMetrics(p, r)
    s = _samples(m.render(highwaters={(topic_name("bars"), 0): len(recs) + len(bad) + 10}))
    st = p.stats
    assert s[("technic_bars_in_total", ())] == st.bars_in == len(recs) + len(bad)
    assert s[("technic_scores_out_total", ())] == st.scores_out > 0
    assert s[("technic_bars_applied_total", ())] == st.bars_applied
    assert s[("technic_offsets_skipped_total", ())] == r.ledger.skipped == 1
    assert s[("technic_deadletter_total", (("reason", "deserialize"),))] == 1
    assert s[("technic_deadletter_total", (("reason", "schema"),))] == 1
    assert s[("technic_deadletter_total", (("reason", "sanity"),))] == 1
    assert s[("technic_deadletter_total", (("reason", "oversize"),))] == 0
    topic = topic_name("bars")
    last = len(recs) + len(bad) - 1
    assert s[("technic_consumer_handled_offset", (("partition", "0"), ("topic", topic)))] == last
    assert s[("technic_consumer_lag", (("partition", "0"), ("topic", topic)))] == 10
    assert s[("technic_model_info", (("version", "test-v1"),))] == 1
    assert s[("technic_model_loaded", ())] == 1
    # latency histogram: one observation per score (count = scores_out), buckets cumulative and monotone
    assert s[("technic_bar_to_score_latency_seconds_count", ())] == st.scores_out == st.latency.n
    assert abs(s[("technic_bar_to_score_latency_seconds_sum", ())] - st.latency.total) < 1e-6
    buckets = [s[("technic_bar_to_score_latency_seconds_bucket", (("le", repr(float(b))),))]
               for b in LATENCY_BUCKETS] + [s[("technic_bar_to_score_latency_seconds_bucket", (("le", "+Inf"),))]]
    assert buckets == sorted(buckets) and buckets[-1] == st.scores_out
    # a second scrape does not count the same scores twice
    s2 = _samples(m.render())
    assert s2[("technic_bar_to_score_latency_seconds_count", ())] == st.scores_out


def test_latency_histogram_counts_every_score():
    from stream.stages.latency import LatencyHistogram
    h = LatencyHistogram()
    h.observe([0.001, 0.02, 0.02, 7.0, float("nan")])
    h.observe([])
    assert h.n == 4 and abs(h.total - 7.041) < 1e-12
    cum = dict(h.buckets())
    assert cum["0.005"] == 1 and cum["0.025"] == 3 and cum["5.0"] == 3 and cum["10.0"] == 4 and cum["+Inf"] == 4


def test_render_is_cumulative_per_pipeline_and_uses_own_registry(data):  # noqa: F811
    from prometheus_client import REGISTRY
    p, r, _ = _drive(data, n=500)
    a = _samples(render(p, r))
    b = _samples(render(p, r))
    assert a == b
    assert not any(name.startswith("technic_bars_in") for name in REGISTRY._names_to_collectors)


def test_readiness_needs_catchup_and_model(data):  # noqa: F811
    p, r, _ = _drive(data, n=100)
    assert readiness(p, r) == (False, {"catchup_done": False, "model_version": "test-v1"})
    r.catchup_done = True
    assert readiness(p, r)[0] is True
    empty = ScoringPipeline(ModelSource(None))
    r2 = Router(empty)
    r2.catchup_done = True
    ok, detail = readiness(empty, r2)
    assert ok is False and detail["model_version"] is None
    s = _samples(render(empty, r2))
    assert s[("technic_ready", ())] == 0 and s[("technic_model_info", (("version", "none"),))] == 1
