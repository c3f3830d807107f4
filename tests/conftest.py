from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer
from tests.redis_topologies import RedisClusterNodes, SentinelSet


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests keep apart by unique cluster names."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """One real 3-primary Redis Cluster for the session, started when first asked for;
    tests keep apart by cluster name, and none of them stops its nodes."""
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """One primary + replica + Sentinel for the session; a test that fails it over starts
    its own ``SentinelSet``."""
    servers = SentinelSet(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def cluster_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
