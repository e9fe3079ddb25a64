"""Fixtures shared by every tier: real nats-server processes, cleaned up even on failure."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The project is not installed into the venv; make `schemas`, `engine` and `tests.support`
# importable however pytest is invoked.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.nats import NatsCluster, NatsServer  # noqa: E402


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh single-node JetStream server with its store in this test's tmp_path."""
    server = NatsServer.start(tmp_path / "nats")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The client URL of `nats_server`."""
    return nats_server.url


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A fresh three-node JetStream cluster on loopback, its stores under tmp_path."""
    cluster = NatsCluster.start(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        cluster.stop()
