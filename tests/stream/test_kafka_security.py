"""Connection security comes from environment variables only (never files or flags)."""

import asyncio
import ssl
from pathlib import Path

import pytest

from stream.io.kafka import client_kwargs, faust_credentials, new_consumer, new_producer
from technic.errors import TechnicError

CA = Path(__file__).resolve().parents[1] / "fixtures" / "test-ca.pem"   # a throw-away CA certificate (no key)


def test_plaintext_by_default(monkeypatch):
    monkeypatch.delenv("TECHNIC_KAFKA_SECURITY_PROTOCOL", raising=False)
    assert client_kwargs() == {} and faust_credentials() is None


def test_sasl_ssl_from_env(monkeypatch):
    monkeypatch.setenv("TECHNIC_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("TECHNIC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("TECHNIC_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("TECHNIC_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("TECHNIC_KAFKA_SSL_CAFILE", str(CA))
    kw = client_kwargs()
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "svc" and kw["sasl_plain_password"] == "s3cret"
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [dict(x[0] for x in c["subject"]) for c in ctx.get_ca_certs()] == [{"commonName": "technic-test-ca"}]
    # the Faust app gets the same settings
    cred = faust_credentials()
    assert (cred.username, cred.password) == ("svc", "s3cret")
    assert cred.mechanism.value == "SCRAM-SHA-512" and cred.protocol.value == "SASL_SSL"
    assert cred.ssl_context.get_ca_certs() == ctx.get_ca_certs()

    async def clients():  # and so do the producers and consumers every stream module builds
        p, c = new_producer("127.0.0.1:1"), new_consumer("127.0.0.1:1")
        try:
            for cl in (p.client, c._client):
                assert cl._security_protocol == "SASL_SSL" and cl._sasl_mechanism == "SCRAM-SHA-512"
                assert (cl._sasl_plain_username, cl._sasl_plain_password) == ("svc", "s3cret")
                assert cl._ssl_context.get_ca_certs() == ctx.get_ca_certs()
        finally:
            await p.stop()
            await c.stop()
    asyncio.run(clients())


def test_ssl_without_sasl(monkeypatch):
    monkeypatch.setenv("TECHNIC_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.delenv("TECHNIC_KAFKA_SSL_CAFILE", raising=False)
    kw = client_kwargs()
    assert set(kw) == {"security_protocol", "ssl_context"} and kw["security_protocol"] == "SSL"
    assert kw["ssl_context"].verify_mode == ssl.CERT_REQUIRED   # system CAs, still verified
    cred = faust_credentials()
    assert cred.context.verify_mode == ssl.CERT_REQUIRED


def test_bad_settings_are_clear_errors(monkeypatch):
    monkeypatch.setenv("TECHNIC_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.delenv("TECHNIC_KAFKA_SASL_USERNAME", raising=False)
    with pytest.raises(TechnicError, match="USERNAME"):
        client_kwargs()
    monkeypatch.setenv("TECHNIC_KAFKA_SECURITY_PROTOCOL", "TLS9")
    with pytest.raises(TechnicError, match="expected one of"):
        client_kwargs()
