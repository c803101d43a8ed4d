"""Fixtures for stream tests.

``broker`` is session-scoped: one embedded noida-db broker (in a temp dir) serves every
test marked ``broker``; set ``TECHNIC_BOOTSTRAP`` to run them against an external
Kafka cluster instead (then nothing is started or stopped here).
"""

from __future__ import annotations

import uuid

import pytest

from stream.io.broker import EmbeddedBroker, resolve_bootstrap


class _External:
    """Stand-in for EmbeddedBroker when TECHNIC_BOOTSTRAP points at a real cluster."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def create_topics(self, specs):
        from stream.io.broker import create_topics
        return create_topics(self.bootstrap, specs)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    external = resolve_bootstrap()
    if external:
        yield _External(external)
        return
    b = EmbeddedBroker(tmp_path_factory.mktemp("broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def unique_prefix():
    """A topic prefix unique to one test, so tests never see each other's messages."""
    return f"t{uuid.uuid4().hex[:8]}."
