"""The Redis StatefulSet's command and ConfigMap, run on a real redis-server.

Schema validation cannot tell whether ``redis.conf`` is a configuration Redis accepts, or
whether the shell command builds a valid command line; starting it can.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.cluster.k8s_like import RedisPod
from tests.k8s.manifests import REDIS_STATEFULSET, base_resources, container, find, memory_mib


@pytest.fixture
def redis_pod(tmp_path: Path) -> Iterator[RedisPod]:
    pod = RedisPod(tmp_path / "redis-0", base_resources(), secrets.token_hex(16))
    pod.start()
    try:
        yield pod
    finally:
        pod.stop()


def test_redis_requires_the_secret_password(redis_pod: RedisPod) -> None:
    # Raw commands: a client library would retry the refusals and hide them.
    assert redis_pod.ask("PING")[0].startswith("-NOAUTH")
    assert redis_pod.ask("AUTH wrong")[0].startswith("-WRONGPASS")
    assert redis_pod.ask(f"AUTH {redis_pod.password}", "PING") == ["+OK", "+PONG"]
    # The URL form the silos get (BAYOU_REDIS_URL) authenticates.
    client = redis.Redis.from_url(redis_pod.url, socket_timeout=2)
    assert client.ping()
    client.close()


def test_redis_runs_with_the_durability_the_docs_promise(redis_pod: RedisPod) -> None:
    client = redis.Redis.from_url(redis_pod.url, socket_timeout=2, decode_responses=True)
    config = {k: str(v) for k, v in client.config_get("*").items()}
    client.close()
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["save"] == ""
    # maxmemory is three quarters of the container's memory limit.
    redis_container = container(find(base_resources(), "StatefulSet", REDIS_STATEFULSET), "redis")
    limit = memory_mib(redis_container["resources"]["limits"]["memory"])
    assert int(config["maxmemory"]) == limit * 3 // 4 * 1024 * 1024
    # The append-only file lives on the data volume.
    assert Path(config["dir"]) == redis_pod.mounts["/data"]
