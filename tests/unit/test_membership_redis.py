"""RedisMembership against the membership contract, on a real redis-server, plus what only
a networked store has to promise: keys under the cluster's prefix, races between silos
with separate connections, and a typed, bounded failure when Redis is gone or frozen."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bayou.errors import StorageError
from bayou.placement import Membership, SiloDeclaredDead, SiloStatus
from bayou.placement.redis_membership import (
    DEFAULT_TIMEOUT,
    MembershipUnavailable,
    RedisMembership,
)
from bayou.storage.redis_keys import MembershipKeys
from tests.redis_server import RedisServer
from tests.unit.membership_conformance import Elapse, MembershipConformance


class TestRedis(MembershipConformance):
    # Real time: short enough to keep the suite fast, long enough that a slow machine
    # does not let a lease run out between two steps of a test (they elapse 0.6 x LEASE).
    LEASE = 0.5

    @pytest.fixture
    async def membership(
        self, redis_server: RedisServer, cluster_name: str
    ) -> AsyncIterator[Membership]:
        membership = RedisMembership(redis_server.url, cluster_name)
        await membership.open()
        yield membership
        await membership.close()

    @pytest.fixture
    def elapse(self) -> Elapse:
        return asyncio.sleep


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def membership(redis_server: RedisServer, cluster_name: str) -> AsyncIterator[Membership]:
    membership = RedisMembership(redis_server.url, cluster_name)
    await membership.open()
    yield membership
    await membership.close()


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test alone may stop, freeze or restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)  # a frozen server cannot handle SIGTERM
        server.stop()


async def test_keys_live_under_the_cluster_prefix_without_ttl(
    membership: Membership, raw: aioredis.Redis, cluster_name: str
) -> None:
    keys = MembershipKeys.of(cluster_name)
    assert keys.members == f"bayou:{{{cluster_name}}}:members"
    await membership.register("s1", "a:1", 5.0)
    await membership.set_status("s1", SiloStatus.DEAD)
    found = {k.decode() async for k in raw.scan_iter(match=f"bayou:{{{cluster_name}}}:*")}
    assert found == {keys.members, keys.version, keys.dead}
    assert [await raw.ttl(k) for k in sorted(found)] == [-1, -1, -1]
    assert await raw.type(keys.members) == b"hash"
    assert await raw.type(keys.dead) == b"hash"
    assert await raw.get(keys.version) == b"2"
    # A tombstone records when (server time, microseconds) the identity died.
    [(silo, died)] = (await raw.hgetall(keys.dead)).items()
    assert silo == b"s1"
    assert abs(int(died) / 1e6 - (await membership.read()).now) < 5


async def test_clusters_are_independent(redis_server: RedisServer, cluster_name: str) -> None:
    one = RedisMembership(redis_server.url, cluster_name)
    two = RedisMembership(redis_server.url, cluster_name + "-2")
    try:
        await one.register("s1", "a:1", 5.0)
        await one.set_status("s1", SiloStatus.DEAD)
        await two.register("s1", "b:1", 5.0)  # the same id is alive in another cluster
        assert (await two.read()).member("s1").status is SiloStatus.JOINING  # type: ignore[union-attr]
        assert await two.version() == 1
        assert await one.version() == 2
    finally:
        await one.close()
        await two.close()


async def test_silos_on_separate_connections_race_to_declare_dead(
    redis_server: RedisServer, cluster_name: str
) -> None:
    silos = [RedisMembership(redis_server.url, cluster_name) for _ in range(10)]
    try:
        await silos[0].register("victim", "v:1", 0.2)
        await asyncio.sleep(0.3)
        results = await asyncio.gather(*(s.declare_dead("victim") for s in silos))
        assert results.count(True) == 1, results
        assert await silos[0].version() == 2
    finally:
        for silo in silos:
            await silo.close()


async def test_times_are_the_servers(membership: Membership) -> None:
    # Two reads a moment apart: the store's clock moves on, and leases are measured on it.
    member = await membership.register("s1", "a:1", 5.0)
    first = await membership.read()
    await asyncio.sleep(0.05)
    second = await membership.read()
    assert member.registered_at <= first.now < second.now
    assert second.now - first.now == pytest.approx(0.05, abs=0.04)
    assert member.lease_expires == pytest.approx(member.registered_at + 5.0, abs=1e-6)


async def test_a_corrupt_key_is_a_storage_error_not_a_redis_one(
    membership: Membership, raw: aioredis.Redis, cluster_name: str
) -> None:
    await raw.set(MembershipKeys.of(cluster_name).members, b"not a hash")
    with pytest.raises(StorageError, match="WRONGTYPE"):
        await membership.read()
    with pytest.raises(StorageError):
        await membership.register("s1", "a:1", 5.0)


def test_cluster_names_must_fit_a_hash_tag() -> None:
    for bad in ("", "a{b", "a}b", "a b"):
        with pytest.raises(ValueError, match="cluster name"):
            RedisMembership("redis://127.0.0.1:1/0", bad)


async def test_a_stopped_redis_fails_every_call_fast_and_typed(
    private_server: RedisServer, cluster_name: str
) -> None:
    membership = RedisMembership(private_server.url, cluster_name)
    try:
        await membership.open()
        await membership.register("s1", "a:1", 5.0)
        private_server.stop()
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "open": membership.open,
            "read": membership.read,
            "version": membership.version,
            "register": lambda: membership.register("s2", "a:2", 5.0),
            "renew": lambda: membership.renew("s1", 5.0),
            "set_status": lambda: membership.set_status("s1", SiloStatus.ACTIVE),
            "declare_dead": lambda: membership.declare_dead("s1"),
            "forget": lambda: membership.forget(["s1"]),
        }
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(MembershipUnavailable, match=name):
                await call()
            assert time.monotonic() - started < DEFAULT_TIMEOUT, name
        assert issubclass(MembershipUnavailable, StorageError)
    finally:
        await membership.close()


async def test_a_frozen_redis_cannot_hang_a_call(
    private_server: RedisServer, cluster_name: str
) -> None:
    membership = RedisMembership(private_server.url, cluster_name)
    try:
        await membership.register("s1", "a:1", 60.0)
        assert private_server.proc is not None
        os.kill(private_server.proc.pid, signal.SIGSTOP)  # accepts connections, never answers
        started = time.monotonic()
        with pytest.raises(MembershipUnavailable, match="did not answer"):
            await membership.renew("s1", 60.0)
        assert time.monotonic() - started < DEFAULT_TIMEOUT + 0.5
        os.kill(private_server.proc.pid, signal.SIGCONT)
        await membership.renew("s1", 60.0)  # and it recovers once Redis answers again
    finally:
        await membership.close()


async def test_survives_a_redis_restart(private_server: RedisServer, cluster_name: str) -> None:
    membership = RedisMembership(private_server.url, cluster_name)
    try:
        await membership.register("s1", "a:1", 60.0)
        private_server.restart()  # pooled connections are now stale; AOF kept the data
        await membership.renew("s1", 60.0)
        assert (await membership.read()).member("s1") is not None
        await membership.set_status("s1", SiloStatus.DEAD)
        private_server.restart()
        with pytest.raises(SiloDeclaredDead):
            await membership.register("s1", "a:1", 60.0)
    finally:
        await membership.close()
