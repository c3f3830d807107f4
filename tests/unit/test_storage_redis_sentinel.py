"""RedisStorage and RedisMembership on a Sentinel-managed primary with one replica: the
shared contracts, ``WAIT`` after every acknowledged batch (once per batch, and a batch too
few replicas confirmed is not acknowledged), and the clients following a failover."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bayou.errors import StorageError
from bayou.placement import Membership
from bayou.placement.redis_membership import RedisMembership
from bayou.storage import ActorKey, Commit, InboxMessage, InboxPut, Storage
from bayou.storage.redis import MAX_CONNECTIONS, RedisStorage
from bayou.storage.redis_scripts import COMMIT_MANY
from tests.redis_server import RedisServer
from tests.redis_topologies import SentinelSet
from tests.unit.membership_conformance import Elapse, MembershipConformance
from tests.unit.storage_conformance import StorageConformance, commit_one, rec, seqs, take


class TestRedisSentinel(StorageConformance):
    @pytest.fixture
    async def storage(
        self, redis_sentinel: SentinelSet, cluster_name: str
    ) -> AsyncIterator[Storage]:
        store = RedisStorage(redis_sentinel.url(), cluster_name)
        await store.open()
        yield store
        await store.close()


class TestRedisSentinelWaitingForTheReplica(StorageConformance):
    """The same contract with every acknowledged batch confirmed by the replica."""

    @pytest.fixture
    async def storage(
        self, redis_sentinel: SentinelSet, cluster_name: str
    ) -> AsyncIterator[Storage]:
        store = RedisStorage(
            redis_sentinel.url("wait_replicas=1&wait_timeout_ms=5000"), cluster_name
        )
        await store.open()
        yield store
        await store.close()


class TestRedisSentinelMembership(MembershipConformance):
    # Real time; 1.5 x the single server's (test_membership_redis.py): these suites run
    # beside three or four more redis-server processes on a busy machine.
    LEASE = 0.75

    @pytest.fixture
    async def membership(
        self, redis_sentinel: SentinelSet, cluster_name: str
    ) -> AsyncIterator[Membership]:
        membership = RedisMembership(redis_sentinel.url(), cluster_name)
        await membership.open()
        yield membership
        await membership.close()

    @pytest.fixture
    def elapse(self) -> Elapse:
        return asyncio.sleep


def command_calls(server: RedisServer, command: str) -> int:
    with redis.Redis(port=server.port, socket_timeout=5) as admin:
        stats: dict[str, Any] = admin.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_wait_is_sent_once_per_batch_on_the_writing_connection(
    redis_sentinel: SentinelSet, cluster_name: str
) -> None:
    store = RedisStorage(redis_sentinel.url("wait_replicas=1&wait_timeout_ms=5000"), cluster_name)
    await store.open()
    try:
        assert (store.wait_replicas, store.wait_timeout_ms) == (1, 5000)
        fences = [await take(store, partition=p) for p in range(8)]
        batch = [
            Commit(ActorKey("t", f"k{i}", i % 8), fences[i % 8], rec(1), inbox_ack="m")
            for i in range(100)
        ]
        primary = redis_sentinel.primary
        waits, evals = command_calls(primary, "wait"), command_calls(primary, "evalsha")
        assert await store.commit(batch) == [None] * 100
        assert command_calls(primary, "wait") - waits == 1  # one WAIT for 100 turns
        assert command_calls(primary, "evalsha") - evals == 1  # and one COMMIT_MANY run
        puts = [
            InboxPut(ActorKey("t", f"k{i}", 0), fences[0], InboxMessage(f"m{i}", b""))
            for i in range(20)
        ]
        waits = command_calls(primary, "wait")
        assert await store.inbox_put_many(puts) == [True] * 20
        assert await store.inbox_put(ActorKey("t", "x", 1), fences[1], InboxMessage("m", b""))
        assert command_calls(primary, "wait") - waits == 2  # a tell's 202 is confirmed too
        # What the replica confirmed is there: read it from the replica itself.
        with redis.Redis(port=redis_sentinel.replica.port) as replica:
            assert replica.exists(store.keys.journal(batch[-1].actor)) == 1
            assert replica.exists(store.keys.inbox(ActorKey("t", "x", 1))) == 1
    finally:
        await store.close()


async def test_a_batch_too_few_replicas_confirmed_is_not_acknowledged(
    redis_sentinel: SentinelSet, cluster_name: str
) -> None:
    # Two replicas asked for, one exists: WAIT returns 1 after its timeout.
    store = RedisStorage(redis_sentinel.url("wait_replicas=2&wait_timeout_ms=50"), cluster_name)
    await store.open()
    try:
        fence = await take(store)
        actor = ActorKey("t", "k", 0)
        results = await store.commit([Commit(actor, fence, rec(1)), Commit(actor, fence, rec(2))])
        assert [type(r) for r in results] == [StorageError, StorageError]
        assert "confirmed by 1 of 2 replicas within 50 ms" in str(results[0])
        # Written on the primary all the same: the runtime reloads the actor and finds it.
        assert await seqs(store, actor) == [1, 2]
        [put] = await store.inbox_put_many([InboxPut(actor, fence, InboxMessage("m", b""))])
        assert type(put) is StorageError
        with pytest.raises(StorageError, match="confirmed by 1 of 2"):
            await store.inbox_put(actor, fence, InboxMessage("n", b""))
    finally:
        await store.close()


async def test_a_burst_past_the_pool_waits_for_a_connection(
    redis_sentinel: SentinelSet, cluster_name: str
) -> None:
    store = RedisStorage(redis_sentinel.url(), cluster_name, batch_commits=False)
    await store.open()  # batch_commits=False: one load per actor, each on a connection
    try:
        actors = [ActorKey("t", f"k{i}", i % 16) for i in range(4 * MAX_CONNECTIONS)]
        loads = await asyncio.gather(*(store.load_actor(a) for a in actors))
        assert all(load.journal == [] for load in loads)
    finally:
        await store.close()


async def eventually_reachable(store: RedisStorage, timeout: float = 30.0) -> None:
    """Until a read succeeds: the clients find the new primary on their next connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await store.owner(0)
            return
        except StorageError:
            assert time.monotonic() < deadline, "storage never reached the new primary"
            await asyncio.sleep(0.2)


@pytest.fixture
def private_set(tmp_path: Path) -> Iterator[SentinelSet]:
    """A primary, replica and Sentinel this test alone may fail over."""
    servers = SentinelSet(tmp_path / "sentinel-set", down_after_ms=1000)
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


async def test_storage_and_membership_follow_a_failover(
    private_set: SentinelSet, cluster_name: str
) -> None:
    url = private_set.url("wait_replicas=1&wait_timeout_ms=2000")
    store = RedisStorage(url, cluster_name, timeout=3.0)
    membership = RedisMembership(url, cluster_name)
    await store.open()
    await membership.open()
    try:
        await membership.register("s1", "a:1", 60.0)
        fence = await take(store)
        actor = ActorKey("t", "k", 0)
        await commit_one(store, Commit(actor, fence, rec(1), kv_writes={"x": b"1"}))
        private_set.primary.stop(signal.SIGKILL)  # no goodbye: the replica has what WAIT saw
        started = time.monotonic()
        with pytest.raises(StorageError):
            await asyncio.wait_for(store.owner(0), 10)  # while Sentinel decides: typed, bounded
        assert time.monotonic() - started < 4
        private_set.wait_failed_over()
        # The new primary has no replica yet: nothing it writes can be acknowledged.
        await eventually_reachable(store)
        [unconfirmed] = await store.commit([Commit(actor, fence, rec(2))])
        assert "confirmed by 0 of 1 replicas" in str(unconfirmed)
        # The old primary comes back; the Sentinel turns it into the new one's replica.
        private_set.primary.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                [result] = await store.commit([Commit(actor, fence, rec(3))])
            except StorageError as exc:  # the whole batch: Redis unreachable for a moment
                result = exc
            if result is None:
                break
            assert time.monotonic() < deadline, f"no replica confirmed a commit: {result}"
            await asyncio.sleep(0.2)
            if "already exists" in str(result):
                break  # landed and confirmed while a WAIT timed out: confirmed now
        assert await seqs(store, actor) == [1, 2, 3]
        assert await store.kv_get(actor, ["x"]) == {"x": b"1"}
        await membership.renew("s1", 60.0)
        assert (await membership.read()).member("s1") is not None
        # A new primary (Redis 7 does not replicate SCRIPT LOAD) may not know the scripts:
        # NOSCRIPT loads them on the node now serving.
        with redis.Redis(port=private_set.replica.port) as new_primary:
            new_primary.script_flush()
            await commit_one(store, Commit(actor, fence, rec(4)))
            assert new_primary.script_exists(COMMIT_MANY.sha) == [True]
    finally:
        await store.close()
        await membership.close()
