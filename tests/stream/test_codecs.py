"""Schemas and edge codecs: every schema compiles, good records pass, each bad class is
rejected with the right reason_code, and encode/decode round-trips."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import fastjsonschema
import numpy as np
import orjson
import pytest

from stream.io import codecs
from stream.io.codecs import RecordError, decode, deadletter_record, encode, sanity_check_bar
from stream.io.topics_config import TOPIC_SPECS

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Keywords of the 2020-12 core, applicator, validation and meta-data vocabularies.
KNOWN = {
    "$schema", "$id", "$ref", "$defs", "$comment", "title", "description", "type", "properties",
    "required", "additionalProperties", "propertyNames", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "enum", "const", "items",
    "minItems", "maxItems", "minProperties", "maxProperties", "if", "then", "else", "allOf",
    "anyOf", "oneOf", "not", "format", "default", "examples",
}
SCHEMA_NAMES = sorted(p.name for p in codecs.SCHEMA_DIR.glob("*.json"))

GOOD = {
    "bar.json": {"symbol": "BRK.B", "ts": "2017-03-01T16:00:00Z", "seq": 3, "open": 10.0,
                 "high": 11.0, "low": 9.5, "close": 10.5, "volume": 1200},
    "fundamental.json": {"symbol": "AAPL", "period_end": "2016-12-31", "available_from": "2017-02-01",
                         "fields": {"eps": 3.2, "book_value": None}, "seq": 1},
    "alt.json": {"symbol": "AAPL", "ts": "2017-03-01", "field": "sentiment", "value": -0.3},
    "score.json": {"symbol": "AAPL", "ts": "2017-03-01", "model_version": "v1", "scores": {"5d": 0.01},
                   "score_online": {"5d": 0.012}, "win_prob": 0.55, "percentile": 0.9, "rank": 10,
                   "universe_size": 100, "top_contributions": [
                       {"feature": "mom_12_1", "value": 0.2, "contribution": 0.004}],
                   "event_time": "2017-03-01T00:00:00Z", "emit_time": "2024-01-01T10:00:00.123Z",
                   "key": "AAPL|2017-03-01|v1"},
    "explanation.json": {"symbol": "AAPL", "ts": "2017-03-01", "model_version": "v1", "key": "AAPL|2017-03-01|v1",
                         "top_contributions": [{"feature": "mom_12_1", "value": None, "contribution": -0.002}],
                         "event_time": "2017-03-01T00:00:00Z", "emit_time": "2024-01-01T10:00:00.125Z"},
    "alert.json": {"id": "a1", "type": "psi", "severity": "warning", "metric": "psi", "value": 0.3,
                   "threshold": 0.25, "window": "60d", "model_version": "v1", "feature": "mom_12_1",
                   "ts": "2017-03-01", "emit_time": "2024-01-01T10:00:00Z", "message": "PSI high"},
    "deadletter.json": deadletter_record("schema", "bad", "technic.bars", 0, 5, b"{}"),
    "control.json": {"type": "model_promoted", "model_version": "v2", "at": "2024-01-01T10:00:00Z"},
}


def _walk(schema, path="$"):
    """Yield (path, subschema) for every subschema."""
    yield path, schema
    for key in ("properties", "$defs"):
        for name, sub in schema.get(key, {}).items():
            yield from _walk(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties", "propertyNames", "if", "then", "else", "not"):
        if isinstance(schema.get(key), dict):
            yield from _walk(schema[key], f"{path}.{key}")


def test_schema_files_cover_every_topic():
    # the internal topics of the split mode (features, snapshots) are written and read by the stages only
    assert {s.schema for s in TOPIC_SPECS if s.schema} == set(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_well_formed_2020_12(name):
    schema = json.loads((codecs.SCHEMA_DIR / name).read_text())
    assert schema["$schema"] == DRAFT
    assert schema["$id"].endswith(name) and schema["title"] and schema["description"]
    assert schema["additionalProperties"] is False
    fastjsonschema.compile(schema)  # raises JsonSchemaDefinitionException if malformed
    for path, sub in _walk(schema):
        unknown = set(sub) - KNOWN
        assert not unknown, f"{name} {path}: unknown keywords {unknown}"
    for pname, prop in schema["properties"].items():
        assert prop.get("description"), f"{name}: property {pname} has no description"
    assert set(schema["required"]) <= set(schema["properties"])


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_good_example_validates_and_round_trips(name):
    rec = GOOD[name]
    codecs.validate(name, rec)
    now = datetime(2017, 3, 2, tzinfo=timezone.utc)
    assert decode(name, encode(rec), now=now) == rec


def test_validator_is_compiled_once():
    assert codecs.validator("bars") is codecs.validator("bars")


BAR = GOOD["bar.json"]
NOW = datetime(2017, 3, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize("raw, code, needle", [
    (b"{", "deserialize", "malformed JSON"),
    (b'{"close": NaN}', "deserialize", "malformed JSON"),
    (b"\xff\xfe", "deserialize", "malformed JSON"),
    (b"[1, 2]", "schema", "JSON object"),
    (encode({**BAR, "symbol": "aapl"}), "schema", "symbol"),
    (encode({k: v for k, v in BAR.items() if k != "close"}), "schema", "close"),
    (encode({**BAR, "close": 0}), "schema", "close"),
    (encode({**BAR, "close": "10"}), "schema", "close"),
    (encode({**BAR, "seq": -1}), "schema", "seq"),
    (encode({**BAR, "seq": 1.5}), "schema", "seq"),
    (encode({**BAR, "ts": "01/03/2017"}), "schema", "ts"),
    (encode({**BAR, "volume": -1}), "schema", "volume"),
    (encode({**BAR, "extra": 1}), "schema", "extra"),
    (encode({**BAR, "high": 9.0}), "sanity", "high"),
    (encode({**BAR, "low": -1.0}), "sanity", "low"),
    (encode({**BAR, "ts": "2017-03-05"}), "sanity", "future"),
    (encode({**BAR, "ts": "2017-02-30"}), "sanity", "ts"),
    (b" " * 70000, "oversize", "exceeds"),
])
def test_bad_bars_rejected_with_reason(raw, code, needle):
    with pytest.raises(RecordError) as info:
        decode("bars", raw, now=NOW)
    assert info.value.reason_code == code
    assert needle in info.value.reason


def test_sanity_check_direct_cases():
    ok = {**BAR, "open": None, "high": None, "low": None}
    assert sanity_check_bar(ok, now=NOW) is ok
    with pytest.raises(RecordError, match="non-finite"):
        sanity_check_bar({**BAR, "close": math.inf}, now=NOW)
    with pytest.raises(RecordError, match="non-finite"):
        sanity_check_bar({**BAR, "volume": math.nan}, now=NOW)
    # tolerance: open == high within 1e-9 relative is fine
    sanity_check_bar({**BAR, "open": 11.0 * (1 + 1e-12)}, now=NOW)
    # configurable future horizon
    sanity_check_bar({**BAR, "ts": "2017-03-05"}, now=NOW, max_future=timedelta(days=5))


def test_other_kinds_reject_bad_records():
    with pytest.raises(RecordError, match="fields") as info:
        decode("fundamentals", encode({**GOOD["fundamental.json"], "fields": {"EPS": 1.0}}))
    assert info.value.reason_code == "schema"
    with pytest.raises(RecordError, match="model_version"):
        decode("control", encode({"type": "model_promoted", "at": "2024-01-01"}))
    with pytest.raises(RecordError, match="type"):
        decode("alerts", encode({**GOOD["alert.json"], "type": "nope"}))
    with pytest.raises(RecordError, match="win_prob"):
        decode("scores", encode({**GOOD["score.json"], "win_prob": 1.5}))


def test_encode_numpy_and_non_finite():
    out = orjson.loads(encode({"a": np.float64("nan"), "b": np.array([1.0, np.inf]),
                               "c": np.int64(7), "d": float("-inf"),
                               "e": np.arange(6.0).reshape(2, 3)[:, ::2]}))
    assert out == {"a": None, "b": [1.0, None], "c": 7, "d": None, "e": [[0.0, 2.0], [3.0, 5.0]]}


def test_deadletter_record_truncates_and_validates():
    payload = b"\xff" + b"x" * 10000
    rec = deadletter_record("deserialize", "bad bytes", "technic.bars", 2, 17, payload, max_payload=100)
    codecs.validate("deadletter", rec)
    assert rec["payload_truncated"] and rec["payload_bytes"] == 10001
    assert len(rec["payload"]) == 100  # \xff -> U+FFFD, one character
    assert (rec["source_topic"], rec["partition"], rec["offset"]) == ("technic.bars", 2, 17)
    small = deadletter_record("weird", "x", "t", None, None, "{}")
    codecs.validate("deadletter", small)
    assert small["reason_code"] == "other" and not small["payload_truncated"]


def test_record_error_rejects_unknown_code():
    with pytest.raises(ValueError):
        RecordError("bogus", "x")


def test_topic_specs_env_overrides(monkeypatch):
    from stream.io import topics_config as tc
    monkeypatch.setenv("TECHNIC_TOPIC_PREFIX", "demo.")
    monkeypatch.setenv("TECHNIC_PARTITIONS", "4")
    specs = {s.kind: s for s in tc.topic_specs()}
    assert specs["bars"].name == "demo.bars" and specs["bars"].partitions == 4
    assert specs["control"].partitions == 1 and specs["control"].configs["cleanup.policy"] == "delete"
    assert tc.topic_specs(partitions=2, prefix="x.")[0].name == "x.bars"
    monkeypatch.setenv("TECHNIC_PARTITIONS", "0")
    with pytest.raises(ValueError, match="TECHNIC_PARTITIONS"):
        tc.topic_specs()
    with pytest.raises(ValueError, match="unknown topic kind"):
        tc.topic_name("nope")


def test_bool_is_not_a_number():
    with pytest.raises(RecordError, match="close"):
        decode("bars", encode({**BAR, "close": True}), now=NOW)


def test_open_close_outside_range_kept_like_batch_policy():
    """Batch cleaning keeps such bars (reported only); the stream must not reject them."""
    for rec in ({**BAR, "open": 12.0}, {**BAR, "close": 9.0}):
        assert decode("bars", encode(rec), now=NOW)["symbol"] == BAR["symbol"]
