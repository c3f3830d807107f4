"""The cluster's promise on the other Redis topologies, with real silo processes: a
3-primary Redis Cluster while a silo is SIGKILLed under load, and a Sentinel-managed
primary that is SIGKILLed under load and replaced by its replica.

Each load is checked as in ``test_cluster.py``: every counter equals exactly the adds
acknowledged for it, and the witness actor's lock (on a plain Redis of its own, outside
the topology under test) saw no two activations running at once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bayou import Client
from tests.cluster.cluster import Cluster, Load, witness_violations
from tests.redis_server import RedisServer
from tests.redis_topologies import RedisClusterNodes, SentinelSet

pytestmark = pytest.mark.cluster


@pytest.fixture
async def on_redis_cluster(
    tmp_path: Path, redis_server: RedisServer, redis_cluster: RedisClusterNodes, cluster_name: str
) -> AsyncIterator[Cluster]:
    silos = Cluster(tmp_path, redis_server, cluster_name, storage_url=redis_cluster.url)
    try:
        yield silos
    finally:
        await silos.close()


async def wait_declared_dead(cluster: Cluster, victim_id: str, timeout: float) -> float:
    started = time.monotonic()
    while True:
        statuses = {m["id"]: m["status"] for m in (await cluster.view())["members"]}
        if statuses.get(victim_id) == "dead":
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"victim not declared dead: {statuses}"
        await asyncio.sleep(0.05)


async def test_sigkill_one_of_three_under_load_on_redis_cluster(
    on_redis_cluster: Cluster, redis_cluster: RedisClusterNodes
) -> None:
    cluster = on_redis_cluster
    await cluster.start(3)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bayou", "status",
        "--redis", redis_cluster.url, "--cluster", cluster.name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert out.decode().count(" active ") == 3
    load = Load(cluster.urls)
    load.start()
    await load.wait_acked(300, timeout=60)
    victim = cluster.silos[1]
    before = await cluster.view(cluster.silos[0])
    victim_id = next(m["id"] for m in before["members"] if m["address"].endswith(f":{victim.port}"))
    orphans = [k for k in load.keys if cluster.owner_of(before, "witness", k) == victim_id]
    assert orphans, "the victim owned none of the load's actors; the test would prove nothing"
    await victim.kill()
    cluster.retire(victim)
    detected = await wait_declared_dead(cluster, victim_id, timeout=15)
    await cluster.wait_settled(2)
    await load.wait_acked(load.total_acked + 300, timeout=60)
    await load.finish()
    await load.check(cluster.urls[0])
    assert await witness_violations(cluster.redis.url) == 0
    print(
        f"\nRedis Cluster: victim declared dead in {detected:.2f}s; retries {dict(load.failures)}"
    )


async def test_primary_failover_under_load_on_sentinel(
    tmp_path: Path, redis_server: RedisServer, cluster_name: str
) -> None:
    """SIGKILL of the Redis primary mid-load. With ``wait_replicas=1`` every acknowledged
    add was on the replica before its reply, so the promoted replica has all of them; the
    silos refuse calls while Redis is gone (their leases lapse) and carry on after."""
    servers = SentinelSet(tmp_path / "sentinel-set", down_after_ms=3000)
    servers.start()
    url = servers.url("wait_replicas=1&wait_timeout_ms=2000")
    cluster = Cluster(tmp_path, redis_server, cluster_name, storage_url=url)
    try:
        await cluster.start(2)
        load = Load(cluster.urls, deadline=120)
        load.start()
        await load.wait_acked(300, timeout=60)
        killed = load.total_acked
        servers.primary.stop(signal.SIGKILL)
        servers.wait_failed_over()
        # The promoted replica has no replica of its own: no write can be confirmed until
        # the old primary returns, which the Sentinel makes a replica of the new one.
        servers.primary.start()
        await load.wait_acked(load.total_acked + 300, timeout=90)
        await load.finish()
        assert all(silo.proc is not None and silo.proc.poll() is None for silo in cluster.silos)
        await load.check(cluster.urls[0])
        assert await witness_violations(cluster.redis.url) == 0
        async with Client(cluster.urls) as client:
            assert await client.ref("witness", load.keys[0]).get() == load.acked[load.keys[0]]
        print(
            f"\nSentinel failover after {killed} acks: none lost; "
            f"client retries {dict(load.failures)}"
        )
    finally:
        await cluster.close()
        servers.stop()
