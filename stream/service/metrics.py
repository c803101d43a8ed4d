"""Prometheus metrics and readiness of the scoring worker.

Everything is read from the objects the worker already keeps: the pipeline's
``Stats`` counters, the router's ``OffsetLedger`` and (when available) the
Faust consumer's highwater marks. A :class:`WorkerMetrics` owns its own
``CollectorRegistry`` (never the process-global one, so tests and several
pipelines in one process do not collide) with one custom collector that turns
those counters into metric families at scrape time; nothing is counted twice.

The bar -> score latency histogram is the pipeline's own (``stream.stages.latency``): one
observation per score emitted, so its ``_count`` equals ``technic_scores_out_total``.

Lag per input partition is ``highwater - (handled offset + 1)``: the
consumer's highwater (next offset to be written) when a Faust app is given,
else the highwater passed in by the caller (``highwaters``), else unknown
(the series is left out rather than reporting a wrong 0).

Endpoints (see :func:`stream.service.faust_mode.attach_agents`): ``/metrics`` (text
exposition format), ``/ready`` (200 once the catch-up is done and a model is
loaded, else 503) next to ``/health``; the web server binds 127.0.0.1.
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    InfoMetricFamily)

from stream.io.codecs import REASON_CODES, load_schema
from stream.stages.latency import LATENCY_BUCKETS  # noqa: F401 (re-exported)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def readiness(pipeline, router) -> tuple[bool, dict]:
    """Ready = catch-up finished and a model is loaded; returns (ready, details)."""
    caught_up = bool(getattr(router, "catchup_done", False))
    model = pipeline.models.version
    return caught_up and model is not None, {"catchup_done": caught_up, "model_version": model}


class WorkerMetrics:
    """Own registry + a collector reading ``pipeline``/``router`` (and optionally a Faust app)."""

    def __init__(self, pipeline, router, app: Any = None, prefix: str = "technic"):
        self.pipeline = pipeline
        self.router = router
        self.app = app
        self.prefix = prefix
        self.highwaters: dict[tuple[str, int], int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # prometheus_client collector protocol
    def describe(self):
        return []

    def _hw(self, topic: str, partition: int) -> int | None:
        if self.app is not None:
            try:
                from faust.types import TP
                hw = self.app.consumer.highwater(TP(topic, partition))
                if hw is not None:
                    self.highwaters[(topic, partition)] = int(hw)
            except Exception:  # consumer not started / partition not fetched yet
                pass
        return self.highwaters.get((topic, partition))

    def collect(self):
        p, r, n = self.pipeline, self.router, self.prefix
        st = p.stats

        def counter(name, doc, value):
            c = CounterMetricFamily(f"{n}_{name}", doc)
            c.add_metric([], float(value))
            return c

        def gauge(name, doc, value):
            g = GaugeMetricFamily(f"{n}_{name}", doc)
            g.add_metric([], float(value))
            return g

        yield counter("bars_in", "Bar records received (valid or not)", st.bars_in)
        yield counter("bars_applied", "Bars applied to the per-symbol state", st.bars_applied)
        yield counter("bars_redelivered", "Bars skipped as exact redeliveries (an applied seq, same content)",
                      st.redelivered)
        yield counter("bars_conflicting_redelivery", "Bars dead-lettered as conflicting redeliveries (an applied "
                      "seq, different content)", st.conflicting_redeliveries)
        yield counter("scores_out", "Score records emitted", st.scores_out)
        yield counter("timestamps_closed", "Bar timestamps closed (cross-section scored)", st.timestamps_closed)
        yield counter("seq_gaps", "Per-symbol sequence gaps seen", st.gaps)
        ledger = getattr(r, "ledger", None)
        yield counter("offsets_skipped", "Records at or below an already handled offset (redelivery, "
                      "Faust restart off-by-one)", getattr(ledger, "skipped", 0))
        yield counter("offset_gaps", "Forward jumps in consumed offsets", len(getattr(ledger, "gaps", ())))

        dl = CounterMetricFamily(f"{n}_deadletter", "Records dead-lettered, by reason code", labels=["reason"])
        for code in sorted(set(REASON_CODES) | set(st.deadletter)):
            dl.add_metric([code], float(st.deadletter.get(code, 0)))
        yield dl
        al = CounterMetricFamily(f"{n}_alerts", "Alerts emitted, by type", labels=["type"])
        types = load_schema("alerts")["properties"]["type"]["enum"]  # every type, 0 until it fires
        for t in sorted(set(types) | set(st.alerts)):
            al.add_metric([t], float(st.alerts.get(t, 0)))
        yield al

        h = HistogramMetricFamily(f"{n}_bar_to_score_latency_seconds",
                                  "Bar receive -> score ready, one observation per score emitted "
                                  "(count = technic_scores_out_total)")
        h.add_metric([], st.latency.buckets(), st.latency.total)
        yield h

        lag = GaugeMetricFamily(f"{n}_consumer_lag", "Records on the input partition not handled yet "
                                "(highwater - handled - 1)", labels=["topic", "partition"])
        pos = GaugeMetricFamily(f"{n}_consumer_handled_offset", "Highest handled offset",
                                labels=["topic", "partition"])
        for (topic, part), off in sorted(getattr(ledger, "handled", {}).items()):
            pos.add_metric([topic, str(part)], float(off))
            hw = self._hw(topic, part)
            if hw is not None:
                lag.add_metric([topic, str(part)], float(max(0, hw - off - 1)))
        yield lag
        yield pos

        version = p.models.version
        info = InfoMetricFamily(f"{n}_model", "Model version currently scoring")
        info.add_metric([], {"version": version or "none"})
        yield info
        yield gauge("model_loaded", "1 when a model is loaded", version is not None)
        yield gauge("model_pending", "1 when a new model waits for the next timestamp",
                    getattr(p.models, "pending", None) is not None)
        yield gauge("pending_timestamps", "Timestamps buffered, not closed yet", len(p.pending))
        yield gauge("active_symbols", "Symbols in the active universe", len(p.active))
        ready, _ = readiness(p, r)
        yield gauge("ready", "1 once the catch-up is done and a model is loaded", ready)

    def render(self, highwaters: Mapping[tuple[str, int], int] | None = None) -> bytes:
        if highwaters:
            self.highwaters.update(highwaters)
        return generate_latest(self.registry)


_BY_PIPELINE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def metrics_for(pipeline, router, app: Any = None) -> WorkerMetrics:
    """The WorkerMetrics of this pipeline (created once: the latency histogram is cumulative)."""
    m = _BY_PIPELINE.get(pipeline)
    if m is None or m.router is not router:
        m = _BY_PIPELINE[pipeline] = WorkerMetrics(pipeline, router, app)
    elif app is not None:
        m.app = app
    return m


def render(pipeline, router, app: Any = None, highwaters: Mapping[tuple[str, int], int] | None = None) -> bytes:
    """Prometheus text exposition of the worker's metrics."""
    return metrics_for(pipeline, router, app).render(highwaters)
