"""Connection security comes from environment variables only (never files or flags)."""

import ssl

import pytest

from stream.kafka import client_kwargs, faust_credentials
from technic.errors import TechnicError


def test_plaintext_by_default(monkeypatch):
    monkeypatch.delenv("TECHNIC_KAFKA_SECURITY_PROTOCOL", raising=False)
    assert client_kwargs() == {} and faust_credentials() is None


def test_sasl_ssl_from_env(monkeypatch):
    monkeypatch.setenv("TECHNIC_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("TECHNIC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("TECHNIC_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("TECHNIC_KAFKA_SASL_PASSWORD", "s3cret")
    kw = client_kwargs()
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "svc" and isinstance(kw["ssl_context"], ssl.SSLContext)
    assert faust_credentials() is not None


def test_bad_settings_are_clear_errors(monkeypatch):
    monkeypatch.setenv("TECHNIC_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.delenv("TECHNIC_KAFKA_SASL_USERNAME", raising=False)
    with pytest.raises(TechnicError, match="USERNAME"):
        client_kwargs()
    monkeypatch.setenv("TECHNIC_KAFKA_SECURITY_PROTOCOL", "TLS9")
    with pytest.raises(TechnicError, match="expected one of"):
        client_kwargs()
