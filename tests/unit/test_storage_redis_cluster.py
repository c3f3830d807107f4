"""RedisStorage and RedisMembership on a real 3-primary Redis Cluster: the shared contracts,
and what only a cluster adds — partitions on every primary, scripts on every primary (and
again after they are lost), a group commit as one pipeline however many nodes it spans,
slots that move (MOVED, ASK), bursts past the per-node pools, and a node that stops."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

from bayou.errors import StorageError
from bayou.placement import Membership
from bayou.placement.redis_membership import MembershipUnavailable, RedisMembership
from bayou.storage import ActorKey, Commit, InboxMessage, Snapshot, Storage
from bayou.storage.redis import MAX_CONNECTIONS, RedisStorage
from bayou.storage.redis_keys import KeySpace
from bayou.storage.redis_scripts import SCRIPTS
from tests.redis_server import RedisServer
from tests.redis_topologies import RedisClusterNodes
from tests.unit.membership_conformance import Elapse, MembershipConformance
from tests.unit.storage_conformance import StorageConformance, commit_one, rec, seqs, take


class TestRedisCluster(StorageConformance):
    @pytest.fixture
    async def storage(
        self, redis_cluster: RedisClusterNodes, cluster_name: str
    ) -> AsyncIterator[Storage]:
        store = RedisStorage(redis_cluster.url, cluster_name)
        await store.open()
        yield store
        await store.close()


class TestRedisClusterMembership(MembershipConformance):
    # Real time; 1.5 x the single server's (test_membership_redis.py): these suites run
    # beside three or four more redis-server processes on a busy machine.
    LEASE = 0.75

    @pytest.fixture
    async def membership(
        self, redis_cluster: RedisClusterNodes, cluster_name: str
    ) -> AsyncIterator[Membership]:
        membership = RedisMembership(redis_cluster.url, cluster_name)
        await membership.open()
        yield membership
        await membership.close()

    @pytest.fixture
    def elapse(self) -> Elapse:
        return asyncio.sleep


@pytest.fixture
async def store(redis_cluster: RedisClusterNodes, cluster_name: str) -> AsyncIterator[RedisStorage]:
    storage = RedisStorage(redis_cluster.url, cluster_name)
    await storage.open()
    yield storage
    await storage.close()


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts every write of a request to a redis socket: one per node per round trip."""
    counter = [0]
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counter[0] += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    yield counter


def node_of(nodes: RedisClusterNodes, key: bytes, asked: RedisServer | None = None) -> RedisServer:
    """The node serving ``key``'s slot, as the cluster itself says (CLUSTER SLOTS): by
    default as the first live node sees it, or as ``asked`` sees it."""
    slot = key_slot(key)
    if asked is None:
        asked = next(n for n in nodes.nodes if n.proc is not None and n.proc.poll() is None)
    for low, high, (_, port, *_), *_ in nodes.run(asked, "CLUSTER", "SLOTS"):
        if low <= slot <= high:
            return next(n for n in nodes.nodes if n.port == int(port))
    raise AssertionError(f"no node serves slot {slot}")


def evalsha_calls(nodes: RedisClusterNodes) -> int:
    total = 0
    for node in nodes.nodes:
        with nodes.admin(node) as admin:
            total += int(admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    return total


async def test_partitions_land_on_every_primary_in_one_pipeline(
    store: RedisStorage, redis_cluster: RedisClusterNodes, sends: list[int]
) -> None:
    space = store.keys
    homes = {node_of(redis_cluster, space.owner(p)).port for p in range(0, 1024, 7)}
    assert len(homes) == 3  # the hash tags spread partitions over every primary
    fences = [await take(store, partition=p) for p in range(0, 1024, 7)]
    batch = [Commit(ActorKey("t", f"k{f.partition}", f.partition), f, rec(1)) for f in fences]
    before = evalsha_calls(redis_cluster)
    sends[0] = 0
    assert await store.commit(batch) == [None] * len(batch)
    assert sends[0] == 3  # one pipeline: one write per node, all at once
    assert evalsha_calls(redis_cluster) - before == len(batch)  # one COMMIT per commit
    loads = await asyncio.gather(*(store.load_actor(c.actor) for c in batch))
    assert all(load.journal == [rec(1)] for load in loads)


async def test_scripts_live_on_every_primary_and_come_back_after_a_flush(
    store: RedisStorage, redis_cluster: RedisClusterNodes
) -> None:
    def loaded() -> list[bool]:
        found = []
        for node in redis_cluster.nodes:
            with redis_cluster.admin(node) as admin:
                found += admin.script_exists(*(s.sha for s in SCRIPTS))
        return found

    assert all(loaded())
    fences = [await take(store, partition=p) for p in range(0, 1024, 100)]
    for node in redis_cluster.nodes:  # as after a restart, a failover or a new node
        with redis_cluster.admin(node) as admin:
            admin.script_flush()
    batch = [Commit(ActorKey("t", "k", f.partition), f, rec(1)) for f in fences]
    assert await store.commit(batch) == [None] * len(batch)  # NOSCRIPT, load, again
    await store.write_snapshot(batch[0].actor, fences[0], Snapshot(1, b"one"))
    assert await store.inbox_put(batch[1].actor, fences[1], InboxMessage("m", b""))
    assert await store.claim(0, "s1") == fences[0].epoch
    for c in batch:
        assert await seqs(store, c.actor) == ([] if c is batch[0] else [1])


def move_slot(
    nodes: RedisClusterNodes, slot: int, source: RedisServer, target: RedisServer
) -> None:
    """Migrate ``slot`` with its keys from ``source`` to ``target``, as resharding does."""
    src_id = nodes.run(source, "CLUSTER", "MYID").decode()
    dst_id = nodes.run(target, "CLUSTER", "MYID").decode()
    nodes.run(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    nodes.run(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    while keys := nodes.run(source, "CLUSTER", "GETKEYSINSLOT", slot, 100):
        nodes.run(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    for node in nodes.nodes:
        nodes.run(node, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)


async def test_a_partition_whose_slot_moved_is_followed(
    store: RedisStorage, redis_cluster: RedisClusterNodes
) -> None:
    """The store's slot map goes stale when a slot moves; MOVED replies redirect every
    kind of call (script, pipeline, MULTI/EXEC) to the new node, and nothing is lost."""
    partition = 5
    actor = ActorKey("t", "moving", partition)
    fence = await take(store, partition=partition)
    await commit_one(store, Commit(actor, fence, rec(1), kv_writes={"x": b"1"}))
    assert await store.inbox_put(actor, fence, InboxMessage("m", b"hi"))
    slot = key_slot(store.keys.tag(partition))
    source = node_of(redis_cluster, store.keys.tag(partition))
    target = next(n for n in redis_cluster.nodes if n is not source)
    move_slot(redis_cluster, slot, source, target)
    try:
        assert node_of(redis_cluster, store.keys.tag(partition)) is target
        load = await store.load_actor(actor)  # MULTI/EXEC on a moved slot
        assert load.journal == [rec(1)] and [m.id for m in load.inbox] == ["m"]
        assert await store.kv_get(actor, ["x"]) == {"x": b"1"}  # pipeline
        await commit_one(store, Commit(actor, fence, rec(2), inbox_ack="m"))  # script
        assert await seqs(store, actor) == [1, 2]
        assert await store.inbox_actors([partition]) == []
    finally:
        move_slot(redis_cluster, slot, target, source)


async def test_a_key_mid_migration_is_read_with_ask(
    store: RedisStorage, redis_cluster: RedisClusterNodes
) -> None:
    """While a slot migrates, a key already moved answers ASK on the old node."""
    partition = 9
    actor = ActorKey("t", "asked", partition)
    fence = await take(store, partition=partition)
    await commit_one(store, Commit(actor, fence, rec(1), kv_writes={"x": b"1"}))
    slot = key_slot(store.keys.tag(partition))
    source = node_of(redis_cluster, store.keys.tag(partition))
    target = next(n for n in redis_cluster.nodes if n is not source)
    src_id = redis_cluster.run(source, "CLUSTER", "MYID").decode()
    dst_id = redis_cluster.run(target, "CLUSTER", "MYID").decode()
    try:
        redis_cluster.run(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        redis_cluster.run(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        kv = store.keys.kv(actor)
        redis_cluster.run(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", kv)
        assert await store.kv_get(actor, ["x"]) == {"x": b"1"}  # ASK, then ASKING on target
        assert await store.read_journal(actor) == [rec(1)]  # not moved yet: the source
    finally:
        # Finish the migration (move_slot picks up where it stands), then move it back.
        move_slot(redis_cluster, slot, source, target)
        move_slot(redis_cluster, slot, target, source)
    assert await store.kv_get(actor, ["x"]) == {"x": b"1"}
    assert await seqs(store, actor) == [1]


async def test_a_burst_past_the_pools_waits_instead_of_failing(
    store: RedisStorage, redis_cluster: RedisClusterNodes
) -> None:
    """Cluster nodes' pools refuse a connection past their limit; the store's gate makes a
    burst of first calls, all on one node, wait for one instead."""
    actors = [ActorKey("t", f"k{i}", 3) for i in range(4 * MAX_CONNECTIONS)]
    loads = await asyncio.gather(*(store.load_actor(a) for a in actors))
    assert all(load.journal == [] for load in loads)
    with redis_cluster.admin(node_of(redis_cluster, store.keys.tag(3))) as admin:
        clients = [c for c in admin.client_list() if c.get("name") == "bayou-storage"]
    assert 0 < len(clients) <= 2 * MAX_CONNECTIONS


async def test_wait_replicas_is_refused_on_a_cluster(
    redis_cluster: RedisClusterNodes, cluster_name: str
) -> None:
    with pytest.raises(ValueError, match="not supported on Redis Cluster"):
        RedisStorage(redis_cluster.url + "?wait_replicas=1", cluster_name)
    given = RedisStorage(redis_cluster.url, cluster_name, wait_replicas=1)
    with pytest.raises(StorageError, match="not supported on Redis Cluster"):
        await given.open()


async def test_an_unreachable_cluster_fails_open_quickly(cluster_name: str) -> None:
    from tests.redis_server import free_port

    store = RedisStorage(f"redis+cluster://127.0.0.1:{free_port()}/", cluster_name, timeout=3)
    membership = RedisMembership(f"redis+cluster://127.0.0.1:{free_port()}/", cluster_name)
    started = time.monotonic()
    with pytest.raises(StorageError):
        await store.open()
    with pytest.raises(MembershipUnavailable):
        await membership.open()
    assert time.monotonic() - started < 6
    await membership.close()


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A cluster this test alone may freeze."""
    nodes = RedisClusterNodes(tmp_path / "cluster", node_timeout_ms=60_000)
    nodes.start()
    try:
        yield nodes
    finally:
        for node in nodes.nodes:
            if node.proc is not None and node.proc.poll() is None:
                os.kill(node.proc.pid, signal.SIGCONT)
        nodes.stop()


async def test_a_frozen_node_fails_its_calls_in_time_and_is_used_again(
    private_cluster: RedisClusterNodes, cluster_name: str
) -> None:
    store = RedisStorage(private_cluster.url, cluster_name, timeout=2.0)
    membership = RedisMembership(private_cluster.url, cluster_name)
    await store.open()
    await membership.open()
    try:
        await membership.register("s1", "a:1", 60.0)
        space = KeySpace(cluster_name)
        frozen = node_of(private_cluster, space.owner(0))
        elsewhere = next(
            p for p in range(1024) if node_of(private_cluster, space.owner(p)) is not frozen
        )
        fence = await take(store, partition=0)
        assert frozen.proc is not None
        os.kill(frozen.proc.pid, signal.SIGSTOP)  # accepts connections, never answers
        try:
            for call in (
                store.commit([Commit(ActorKey("t", "k", 0), fence, rec(1))]),
                store.load_actor(ActorKey("t", "k", 0)),
            ):
                started = time.monotonic()
                with pytest.raises(StorageError) as info:
                    await asyncio.wait_for(call, 10)
                assert type(info.value) is StorageError
                assert time.monotonic() - started < 3
        finally:
            os.kill(frozen.proc.pid, signal.SIGCONT)
        other = await take(store, partition=elsewhere)
        [result] = await store.commit([Commit(ActorKey("t", "k", 0), fence, rec(1))])
        assert result is None or type(result) is StorageError  # may have landed
        assert await seqs(store, ActorKey("t", "k", 0)) == [1]
        await commit_one(store, Commit(ActorKey("t", "k", elsewhere), other, rec(1)))
        await membership.renew("s1", 60.0)
    finally:
        await store.close()
        await membership.close()


async def test_a_primary_killed_is_replaced_by_its_replica(
    tmp_path: Path, cluster_name: str
) -> None:
    """SIGKILL of the primary serving a partition: its calls fail (typed, in time) until
    Redis Cluster promotes the replica, then reach it; what the replica had is there."""
    nodes = RedisClusterNodes(tmp_path / "cluster", node_timeout_ms=1000)
    nodes.start()
    try:
        space = KeySpace(cluster_name)
        primary = node_of(nodes, space.owner(0))
        replica = nodes.add_replica(primary)
        store = RedisStorage(nodes.url, cluster_name, timeout=3.0)
        membership = RedisMembership(nodes.url, cluster_name)
        await store.open()
        await membership.open()
        try:
            await membership.register("s1", "a:1", 60.0)
            fence = await take(store)
            actor = ActorKey("t", "k", 0)
            await commit_one(store, Commit(actor, fence, rec(1), kv_writes={"x": b"1"}))
            with nodes.admin(primary) as admin:  # the replica has it before the kill
                assert admin.execute_command("WAIT", 1, 5000) == 1
            primary.stop(signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(StorageError):
                await asyncio.wait_for(store.owner(0), 10)
            assert time.monotonic() - started < 4
            deadline = time.monotonic() + 30
            while True:
                try:
                    [result] = await store.commit([Commit(actor, fence, rec(2))])
                except StorageError as exc:  # the whole batch: the node is unreachable
                    result = exc
                if result is None or "already exists" in str(result):
                    break
                assert time.monotonic() < deadline, f"never reached the promoted replica: {result}"
                await asyncio.sleep(0.2)
            # The promoted replica knows at once; the other primaries learn it by gossip,
            # which on a loaded box can lag the first write that reached the replica.
            assert node_of(nodes, space.owner(0), asked=replica) is replica
            deadline = time.monotonic() + 10
            while node_of(nodes, space.owner(0)) is not replica:
                assert time.monotonic() < deadline, "the other nodes never learned the failover"
                await asyncio.sleep(0.1)
            assert await seqs(store, actor) == [1, 2]
            assert await store.kv_get(actor, ["x"]) == {"x": b"1"}
            await membership.renew("s1", 60.0)
        finally:
            await store.close()
            await membership.close()
    finally:
        nodes.stop()
