"""The ops kit (ops/prometheus, ops/grafana, docker-compose.yml) parses and names only real metrics.

Every metric (and label) the alert rules and the dashboard query must exist in the worker's
/metrics exposition: here a scrape of the in-process metrics of a pipeline that saw good bars,
bad bars, redeliveries and drift alerts; ``tests/stream/test_fuzz.py`` repeats the name check on a
real worker process's /metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
OPS = ROOT / "ops"
RULES = OPS / "prometheus" / "alerts.yml"
PROM = OPS / "prometheus" / "prometheus.yml"
DASHBOARD = OPS / "grafana" / "dashboards" / "technic-worker.json"
PROMETHEUS_BUILTIN = {"up"}  # synthesized by Prometheus for every target
_METRIC = re.compile(r"\b(technic_[a-z0-9_]+)\b")
_MATCHER = re.compile(r"(technic_[a-z0-9_]+)\{([^}]*)\}")
_LABEL = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def exposition(text: str) -> dict[str, set]:
    """sample name -> label names seen, from a /metrics text."""
    out: dict[str, set] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def missing_metrics(text: str, exprs=None) -> list[str]:
    """Names (and label names) the ops kit queries that the exposition ``text`` lacks."""
    have = exposition(text)
    bad = []
    for expr in exprs if exprs is not None else rule_exprs() + dashboard_exprs():
        for name in _METRIC.findall(expr):
            if name not in have:
                bad.append(f"{name} (in {expr!r})")
        for name, matchers in _MATCHER.findall(expr):
            for label, _, _ in _LABEL.findall(matchers):
                if name in have and label not in have[name]:
                    bad.append(f"{name}{{{label}}} (in {expr!r})")
    return bad


@pytest.fixture(scope="module")
def scrape():
    """/metrics of an in-process worker pipeline that saw bars, bad records and drift alerts."""
    from stream.service.metrics import render
    from stream.stages.models import ModelSource
    from stream.stages.pipeline import PipelineConfig, ScoringPipeline
    from stream.tools.publisher import bar_records
    from stream.io.topics_config import topic_name
    from stream.service.router import Router
    from technic.data import clean_bars, load_bars, load_securities, sector_map
    from tests.stream.test_pipeline import FIX, LinearScorer

    bars, _ = clean_bars(load_bars(FIX / "bars_400d.csv.gz"))
    p = ScoringPipeline(ModelSource(None, scorer=LinearScorer()),
                        sectors=sector_map(load_securities(FIX / "securities_400d.csv")),
                        config=PipelineConfig(grace_s=1e9))
    r = Router(p)
    topic = topic_name("bars")
    recs = list(bar_records(bars))[:600]
    for off, (_, k, v) in enumerate(recs):
        r.handle(topic, 0, off, k, v)
    r.handle(topic, 0, 600, b"WRONG", recs[-1][2])
    r.handle(topic, 0, 601, recs[0][1], orjson.dumps(dict(orjson.loads(recs[0][2]), close=1.0)))
    p.flush()
    r.catchup_done = True
    return render(p, r, highwaters={(topic, 0): 700}).decode()


def test_alert_rules_parse_and_are_complete():
    doc = yaml.safe_load(RULES.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 10
    names = [r["alert"] for r in rules]
    assert len(set(names)) == len(names)
    for r in rules:
        assert set(r) >= {"alert", "expr", "labels", "annotations"}, r
        assert r["labels"]["severity"] in ("warning", "critical"), r
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        assert "for" not in r or re.fullmatch(r"\d+[smhd]", r["for"]), r
        assert r["expr"].count("(") == r["expr"].count(")"), r
    exprs = " ".join(r["expr"] for r in rules)
    for needed in ("technic_consumer_lag", "technic_bar_to_score_latency_seconds_bucket", "technic_deadletter_total",
                   "technic_alerts_total", "technic_model_loaded", "technic_ready"):
        assert needed in exprs, needed


def test_dashboard_covers_the_worker():
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["panels"]
    ds = yaml.safe_load((OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    titles = " ".join(p["title"].lower() for p in doc["panels"])
    for needed in ("lag", "bars / s", "latency", "dead letters", "drift", "model version"):
        assert needed in titles, needed
    for p in doc["panels"]:
        assert p["datasource"]["uid"] == uid and p["targets"], p["title"]
    assert len({(q["gridPos"]["x"], q["gridPos"]["y"]) for q in doc["panels"]}) == len(doc["panels"])


def test_every_metric_and_label_the_kit_names_is_exported(scrape):
    assert missing_metrics(scrape) == []
    # and a typo would be caught
    assert missing_metrics(scrape, ["rate(technic_bars_inn_total[5m])"])
    assert missing_metrics(scrape, ['technic_deadletter_total{kind="x"}'])


def test_label_values_the_kit_filters_on_exist():
    from stream.io.codecs import REASON_CODES
    types = set(json.loads((ROOT / "schemas" / "alert.json").read_text())["properties"]["type"]["enum"])
    for expr in rule_exprs() + dashboard_exprs():
        for name, matchers in _MATCHER.findall(expr):
            for label, op, value in _LABEL.findall(matchers):
                allowed = {"reason": set(REASON_CODES), "type": types}.get(label)
                if allowed is None:
                    continue
                values = value.split("|") if op == "=~" else [value]
                assert set(values) <= allowed, (expr, set(values) - allowed)


def test_prometheus_config_and_compose_wire_the_kit():
    prom = yaml.safe_load(PROM.read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    job = prom["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["dns_sd_configs"][0]["port"] == 6066
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]
    assert {"prometheus", "grafana", "worker"} <= set(svc)
    worker_cmd = svc["worker"]["command"]
    assert worker_cmd[worker_cmd.index("--web-bind") + 1] == "0.0.0.0"
    assert worker_cmd[worker_cmd.index("--web-port") + 1] == str(job["dns_sd_configs"][0]["port"])
    for name in ("prometheus", "grafana"):
        for vol in svc[name]["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), vol
