"""RedisStorage against the storage contract on a real redis-server, plus what only Redis
adds: one hash slot per partition, one round trip per group commit, scripts reloaded after
a flush or a restart, and redis failures surfacing as bounded ``StorageError``s."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

from bayou.errors import FencedWrite, StorageError
from bayou.storage import (
    ActorKey,
    Commit,
    Fence,
    InboxMessage,
    InboxPut,
    Ownership,
    RedisStorage,
    Reminder,
    Snapshot,
    Storage,
    open_storage,
)
from bayou.storage.redis_keys import (
    KeySpace,
    decode_actor,
    decode_reminder_member,
    decode_reminder_value,
    encode_actor,
    encode_reminder_value,
    journal_id,
    reminder_member,
)
from bayou.storage.redis_scripts import COMMIT_MANY
from tests.redis_server import RedisServer
from tests.unit.storage_conformance import (
    A,
    StorageConformance,
    check_reminders_due_at_scale,
    commit_one,
    expected_due,
    fill_reminders,
    rec,
    rem,
    seqs,
    take,
)

# Names that would break a naive ``type:key`` layout or the hash tag.
TRICKY = [
    ActorKey("a:b", "c", 3),
    ActorKey("a", "b:c", 3),
    ActorKey("{t}", "}{", 3),
    ActorKey("", "", 3),
    ActorKey("tÿpe", "kéy:1:2", 3),
]


class TestRedis(StorageConformance):
    @pytest.fixture
    async def storage(self, redis_server: RedisServer, cluster_name: str) -> AsyncIterator[Storage]:
        store = RedisStorage(redis_server.url, cluster_name)
        await store.open()
        yield store
        await store.close()


class TestRedisScriptPerCommit(StorageConformance):
    """The commit path a Redis Cluster client takes: one script run per commit."""

    @pytest.fixture
    async def storage(self, redis_server: RedisServer, cluster_name: str) -> AsyncIterator[Storage]:
        store = RedisStorage(redis_server.url, cluster_name, batch_commits=False)
        await store.open()
        yield store
        await store.close()


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    from redis.asyncio.connection import Connection

    from bayou.storage.redis import make_client

    pool = make_client("redis://127.0.0.1:1/0").connection_pool
    assert pool.connection_class is not Connection  # packs with hiredis
    ours, theirs = pool.connection_class(), Connection()
    for args in [
        ("EVALSHA", "abc", 2, b"k1", "k2", "kéy", 1.5, -3, b"x" * 100_000, b""),
        ("SCRIPT LOAD", b"return 1"),
        (b"CLIENT SETNAME", "bayou-storage"),
    ]:
        assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))


def test_commit_path_is_chosen_by_the_client_type() -> None:
    from redis.asyncio.cluster import RedisCluster

    store = RedisStorage("redis://127.0.0.1:1/0", "c")
    assert store._single_node(redis.asyncio.Redis()) is True
    store = RedisStorage("redis://127.0.0.1:1/0", "c")
    cluster = RedisCluster.__new__(RedisCluster)  # never connects: only its type is asked
    assert store._single_node(cluster) is False


@pytest.fixture
async def store(redis_server: RedisServer, cluster_name: str) -> AsyncIterator[RedisStorage]:
    storage = RedisStorage(redis_server.url, cluster_name)
    await storage.open()
    yield storage
    await storage.close()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client for looking behind the store's back."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts every write of a request to a redis socket: one per network round trip."""
    counter = [0]
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counter[0] += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    yield counter


async def command_calls(admin: redis.asyncio.Redis, command: str) -> int:
    stats = await admin.info("commandstats")
    entry = stats.get(f"cmdstat_{command}", {})
    return int(entry.get("calls", 0))


async def stream_ids(admin: redis.asyncio.Redis, key: bytes) -> list[bytes]:
    entries = cast(list[tuple[bytes, Any]], await admin.xrange(key))
    return [entry_id for entry_id, _ in entries]


# -- keys ----------------------------------------------------------------------------------


def test_every_key_of_a_partition_shares_one_slot() -> None:
    space = KeySpace("blue:prod")
    for actor in TRICKY:
        keys = space.actor(actor)
        slots = {key_slot(k) for k in keys.all()}
        assert slots == {key_slot(space.tag(3))}, actor
        assert all(b"blue:prod" in k for k in keys.all())
    assert key_slot(space.owner(3)) != key_slot(space.owner(4))


def test_actor_encoding_is_unambiguous() -> None:
    encoded = [encode_actor(a) for a in TRICKY]
    assert len(set(encoded)) == len(TRICKY)
    assert [decode_actor(e, 3) for e in encoded] == TRICKY
    space = KeySpace("c")
    assert space.journal(TRICKY[0]) != space.journal(TRICKY[1])


def test_reminder_members_sort_like_type_key_name() -> None:
    rng = random.Random(3)
    alphabet = ["", "\x00", "\x01", "\xff", "a", "b", ":", "é", "\uffff", "😀"]

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(4)))

    triples = {(text(), text(), text()) for _ in range(3000)}
    members = {reminder_member(ActorKey(t, k, 9), n): (t, k, n) for t, k, n in triples}
    assert len(members) == len(triples)  # unambiguous
    assert [members[m] for m in sorted(members)] == sorted(triples)
    for member, (t, k, n) in members.items():
        assert decode_reminder_member(member, 9) == (ActorKey(t, k, 9), n)
    for bad in (b"", b"a", b"a\x00", b"a\x00\x02", b"a\x00\x01b\x00\x01", b"\x00\x01" * 4):
        with pytest.raises(ValueError):
            decode_reminder_member(bad, 0)


def test_reminder_values_round_trip() -> None:
    for due, period, data in [
        (1712345678.123456, None, b""),
        (-0.5, 1 / 3, b"a:b:c"),
        (1e-300, 1e300, bytes(range(256))),
    ]:
        value = encode_reminder_value(due, period, data)
        assert decode_reminder_value(value) == (due, period, data)
    with pytest.raises(ValueError):
        decode_reminder_value(b"1.0")


@pytest.mark.parametrize("cluster", ["", "a{b", "a}b"])
def test_cluster_names_that_break_the_tag_are_refused(cluster: str) -> None:
    with pytest.raises(ValueError, match="cluster name"):
        KeySpace(cluster)


async def test_stored_keys_follow_the_layout(
    store: RedisStorage, admin: redis.asyncio.Redis, cluster_name: str
) -> None:
    expected_types = {
        b"own": b"hash",
        b"inboxes": b"set",
        b"j": b"stream",
        b"s": b"hash",
        b"kv": b"hash",
        b"in": b"hash",
        b"iq": b"zset",
        b"st": b"hash",
        b"rd": b"zset",
        b"rm": b"hash",
    }
    fence = await take(store, partition=3)
    for actor in TRICKY:
        await commit_one(store, Commit(actor, fence, rec(1), kv_writes={"k": b"v"}))
        await store.inbox_put(actor, fence, InboxMessage("m", b"x"))
        await store.step_put(actor, fence, "inv", 0, b"s")
        await store.write_snapshot(actor, fence, Snapshot(0, b"state"))
        await store.reminder_set(fence, Reminder(actor, "r:1", 1.0, None, b"x"))
    keys = [k async for k in admin.scan_iter(match=f"bayou:{{{cluster_name}:*")]
    assert len(keys) == 3 + 7 * len(TRICKY)
    tag = KeySpace(cluster_name).tag(3)
    for key in keys:
        assert key_slot(key) == key_slot(tag), key
        kind = key.split(b"}:", 1)[1].split(b":", 1)[0]
        assert await admin.type(key) == expected_types[kind], key
        assert await admin.ttl(key) == -1, key
    assert await store.inbox_actors([3]) == sorted(TRICKY, key=lambda a: (a.type, a.key))
    for actor in TRICKY:
        assert await store.read_journal(actor) == [rec(1)]
    index = store.keys.reminder_index(3)
    assert await admin.zcard(index) == len(TRICKY)
    assert await admin.zscore(index, reminder_member(TRICKY[0], "r:1")) == 1.0
    assert await admin.hgetall(store.keys.reminders(TRICKY[0])) == {b"r:1": b"1.0::x"}


async def test_cancelled_reminders_leave_no_keys(
    store: RedisStorage, admin: redis.asyncio.Redis
) -> None:
    fence = await take(store)
    await store.reminder_set(fence, rem(A, "x", 1.0))
    await commit_one(store, Commit(A, fence, rec(1), reminders={"y": rem(A, "y", 2.0)}))
    index, definitions = store.keys.reminder_index(0), store.keys.reminders(A)
    assert await admin.zrange(index, 0, -1, withscores=True) == [
        (reminder_member(A, "x"), 1.0),
        (reminder_member(A, "y"), 2.0),
    ]
    await store.reminder_set(fence, rem(A, "x", 3.0))  # replaced: the score moves
    assert await admin.zscore(index, reminder_member(A, "x")) == 3.0
    assert await admin.zcard(index) == 2
    assert await store.reminder_cancel(fence, A, "x")
    await commit_one(store, Commit(A, fence, rec(2), reminders={"y": None}))
    assert await admin.exists(index, definitions) == 0


async def test_journal_is_a_stream_of_seq_ids(
    store: RedisStorage, admin: redis.asyncio.Redis
) -> None:
    fence = await take(store)
    for seq in (5, 3, 1, 4, 2):  # out of order: the script re-appends the newer entries
        await commit_one(store, Commit(A, fence, rec(seq)))
    assert await stream_ids(admin, store.keys.journal(A)) == [journal_id(s) for s in range(1, 6)]
    assert await store.read_journal(A) == [rec(s) for s in range(1, 6)]
    results = await store.commit([Commit(A, fence, rec(s)) for s in (3, 6)])
    assert isinstance(results[0], StorageError) and results[1] is None
    await store.write_snapshot(A, fence, Snapshot(4, b"four"))
    assert await stream_ids(admin, store.keys.journal(A)) == [journal_id(5), journal_id(6)]
    await commit_one(store, Commit(A, fence, rec(8)))
    await commit_one(store, Commit(A, fence, rec(7)))
    assert await seqs(store, A) == [5, 6, 7, 8]


async def test_long_journal_reads_in_pages(store: RedisStorage) -> None:
    fence = await take(store)
    await store.commit([Commit(A, fence, rec(s)) for s in range(1, 2502)])
    assert await seqs(store, A) == list(range(1, 2502))
    assert await seqs(store, A, after=1000) == list(range(1001, 2502))


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("batched", [True, False], ids=["one-script", "script-per-commit"])
async def test_group_commit_is_one_round_trip(
    store: RedisStorage, admin: redis.asyncio.Redis, sends: list[int], batched: bool
) -> None:
    store.batch_commits = batched
    fences = [await take(store, partition=p) for p in range(8)]
    batch = [
        Commit(
            ActorKey("t", f"k{i}", i % 8),
            fences[i % 8],
            rec(1),
            kv_writes={"n": b"%d" % i},
            inbox_ack="m",
            clear_steps="inv",
        )
        for i in range(200)
    ]
    evalsha_before = await command_calls(admin, "evalsha")
    sends[0] = 0
    assert await store.commit(batch) == [None] * 200
    assert sends[0] == 1, f"{sends[0]} round trips for one batch"
    # On a single Redis the batch is one script run; on Redis Cluster, one per commit.
    assert await command_calls(admin, "evalsha") - evalsha_before == (1 if batched else 200)
    assert await store.kv_get(ActorKey("t", "k199", 7), ["n"]) == {"n": b"199"}


async def test_inbox_actors_is_two_round_trips(store: RedisStorage, sends: list[int]) -> None:
    sends[0] = 0
    assert await store.inbox_actors(range(1024)) == []
    assert sends[0] == 1  # the listing of every partition
    for p in (0, 700):
        fence = await take(store, partition=p)
        await store.inbox_put(ActorKey("t", "k", p), fence, InboxMessage("m", b""))
    sends[0] = 0
    found = await store.inbox_actors(range(1024))
    assert sends[0] == 2  # ... and the check that each listed inbox holds a message
    assert found == [ActorKey("t", "k", 0), ActorKey("t", "k", 700)]


async def test_reminder_calls_are_one_round_trip_each(
    store: RedisStorage, sends: list[int]
) -> None:
    fences = [await take(store, partition=p) for p in (0, 700)]
    sends[0] = 0
    await store.reminder_set(fences[0], rem(ActorKey("t", "k", 0), "a", 5.0))
    assert await store.reminder_cancel(fences[0], ActorKey("t", "k", 0), "a")
    await store.reminder_set(fences[1], rem(ActorKey("t", "k", 700), "b", 5.0))
    assert await store.reminders_of(ActorKey("t", "k", 700)) != []
    assert sends[0] == 4
    batch = [
        Commit(ActorKey("t", f"k{i}", 0), fences[0], rec(1), reminders={"r": None, "s": None})
        for i in range(50)
    ]
    sends[0] = 0
    assert await store.commit(batch) == [None] * 50
    assert sends[0] == 1


async def test_few_due_reminders_take_two_round_trips(
    store: RedisStorage, admin: redis.asyncio.Redis, sends: list[int]
) -> None:
    """The common poll: every partition's index range in one pipeline, then definitions."""
    expected = []
    for p in (3, 500, 1000):
        fence = await take(store, partition=p)
        reminder = rem(ActorKey("t", "k", p), "r", float(p))
        await store.reminder_set(fence, reminder)
        expected.append(reminder)
    ranges_before = await command_calls(admin, "zrangebyscore")
    sends[0] = 0
    assert await store.reminders_due(range(1024), 2000.0) == expected
    assert sends[0] == 2
    assert await command_calls(admin, "zrangebyscore") - ranges_before == 1024
    sends[0] = 0
    assert await store.reminders_due(range(1024), 0.0) == []
    assert sends[0] == 1  # nothing due: no definitions to read


async def test_reminders_due_merges_a_skewed_backlog(
    store: RedisStorage, admin: redis.asyncio.Redis, sends: list[int]
) -> None:
    """One partition holds the whole earliest backlog: only it is asked again, for ever
    larger ranges, and the entries read stay near ``limit``."""
    fences = {p: await take(store, partition=p) for p in range(64)}
    everything = []
    for i in range(1000):
        everything.append(rem(ActorKey("t", "dense", 0), f"n{i:04}", float(i)))
    for p in range(1, 64):
        everything += [rem(ActorKey("t", "sparse", p), f"m{j}", 500.0 + j * p) for j in range(5)]
    for reminder in everything:
        await store.reminder_set(fences[reminder.actor.partition], reminder)
    for until, limit in [(math.inf, 500), (math.inf, 1000), (600.0, 700), (math.inf, 3)]:
        ranges_before = await command_calls(admin, "zrangebyscore")
        sends[0] = 0
        got = await store.reminders_due(range(64), until, limit)
        round_trips = sends[0]
        assert got == expected_due(everything, range(64), until, limit), (until, limit)
        ranges = await command_calls(admin, "zrangebyscore") - ranges_before
        print(f"limit {limit}: {round_trips} round trips, {ranges} ranges")
        assert round_trips <= 8 and ranges <= 64 + 8


async def test_reminders_changed_during_a_poll(
    store: RedisStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes between the index read and the definitions read: a cancelled reminder is
    left out, one moved past ``until`` too, one moved earlier comes with its new time."""
    fence = await take(store)
    for name, due in [("gone", 1.0), ("later", 2.0), ("earlier", 3.0), ("kept", 4.0)]:
        await store.reminder_set(fence, rem(A, name, due))
    earliest = store._earliest

    async def racing(*args: Any) -> Any:
        entries = await earliest(*args)
        assert await store.reminder_cancel(fence, A, "gone")
        await store.reminder_set(fence, rem(A, "later", 50.0))
        await store.reminder_set(fence, rem(A, "earlier", 0.5))
        return entries

    monkeypatch.setattr(store, "_earliest", racing)
    assert await store.reminders_due([0], 10.0) == [rem(A, "earlier", 0.5), rem(A, "kept", 4.0)]


async def test_reminders_due_at_scale(store: RedisStorage) -> None:
    """100,000 reminders over 1024 partitions; correctness asserted, times printed (-s)."""
    started = time.perf_counter()
    everything = await fill_reminders(store, 100_000)
    print(f"\nredis: 100,000 reminders written in {time.perf_counter() - started:.1f} s")
    await check_reminders_due_at_scale(store, everything)


async def test_scripts_reload_after_script_flush(
    store: RedisStorage, admin: redis.asyncio.Redis, sends: list[int]
) -> None:
    fence = await take(store)
    await admin.script_flush()
    sends[0] = 0
    assert await store.commit([Commit(A, fence, rec(1)), Commit(A, fence, rec(2))]) == [None] * 2
    assert sends[0] == 3  # NOSCRIPT replies, SCRIPT LOAD, the refused commits again
    await admin.script_flush()
    await store.step_put(A, fence, "inv", 0, b"s")
    assert await store.steps_read(A, "inv") == [b"s"]
    assert await seqs(store, A) == [1, 2]


# -- failures ------------------------------------------------------------------------------


async def test_redis_errors_become_storage_errors(
    store: RedisStorage, admin: redis.asyncio.Redis
) -> None:
    fence = await take(store)
    await admin.set(store.keys.journal(A), b"not a stream")  # sabotage: wrong type
    [result] = await store.commit([Commit(A, fence, rec(1), kv_writes={"x": b"1"})])
    assert type(result) is StorageError
    assert await store.kv_get(A, ["x"]) == {}  # the script failed before writing
    with pytest.raises(StorageError) as info:
        await store.read_journal(A)
    assert type(info.value) is StorageError


@pytest.mark.parametrize("batched", [True, False], ids=["one-script", "script-per-commit"])
async def test_a_commit_that_fails_in_redis_fails_alone(
    store: RedisStorage, admin: redis.asyncio.Redis, batched: bool
) -> None:
    store.batch_commits = batched
    fence = await take(store)
    broken = ActorKey("t", "broken", 0)
    await admin.set(store.keys.journal(broken), b"not a stream")  # sabotage: wrong type
    batch = [
        Commit(A, fence, rec(1), kv_writes={"x": b"1"}),
        Commit(broken, fence, rec(1), kv_writes={"x": b"1"}),
        Commit(broken, fence, rec(2)),  # a plain append (COMMIT_MANY's short form)
        Commit(A, fence, rec(2), kv_writes={"x": b"2"}),
    ]
    first, failed, plain, last = await store.commit(batch)
    assert first is None and last is None
    for bad in (failed, plain):
        assert type(bad) is StorageError and "broken" in str(bad)
    assert await store.kv_get(broken, ["x"]) == {}
    assert await seqs(store, A) == [1, 2]
    assert await store.kv_get(A, ["x"]) == {"x": b"2"}


async def test_inbox_actors_drops_entries_whose_inbox_is_empty(
    store: RedisStorage, admin: redis.asyncio.Redis
) -> None:
    # As versions before the fix left them: listed, with nothing in the inbox.
    fence = await take(store)
    stale = ActorKey(A.type, "stale", A.partition)
    await admin.sadd(store.keys.inboxes(A.partition), encode_actor(stale))
    await store.inbox_put(A, fence, InboxMessage("m1", b"one"))
    assert await store.inbox_actors([A.partition]) == [A]
    assert await admin.smembers(store.keys.inboxes(A.partition)) == {encode_actor(A)}


@pytest.mark.parametrize("batched", [True, False], ids=["one-script", "script-per-put"])
async def test_an_inbox_put_that_fails_in_redis_fails_alone(
    store: RedisStorage, admin: redis.asyncio.Redis, batched: bool
) -> None:
    store.batch_commits = batched
    fence = await take(store)
    broken = ActorKey("t", "broken", 0)
    await admin.set(store.keys.inbox(broken), b"not a hash")  # sabotage: wrong type
    batch = [
        InboxPut(A, fence, InboxMessage("m1", b"one")),
        InboxPut(broken, fence, InboxMessage("m1", b"one")),
        InboxPut(A, fence, InboxMessage("m1", b"again")),
        InboxPut(A, fence, InboxMessage("m2", b"two")),
    ]
    first, failed, again, second = await store.inbox_put_many(batch)
    assert (first, again, second) == (True, False, True)
    assert type(failed) is StorageError and "broken" in str(failed)
    assert await store.inbox_read(A) == [InboxMessage("m1", b"one"), InboxMessage("m2", b"two")]


async def test_lifecycle(redis_server: RedisServer, cluster_name: str) -> None:
    store = RedisStorage(redis_server.url, cluster_name)
    with pytest.raises(StorageError, match="not open"):
        await store.owner(0)
    await store.open()
    await store.open()  # no-op
    assert await store.claim(0, "s1") == 1
    await store.close()
    await store.close()
    with pytest.raises(StorageError):
        await store.inbox_actors([])
    await store.open()  # a new client: the data is the server's
    assert await store.owner(0) == Ownership(0, "s1", 1)
    await store.close()


async def test_given_client_is_borrowed(redis_server: RedisServer, cluster_name: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    store = RedisStorage("redis://ignored", cluster_name, client=client)
    await store.open()
    assert await store.claim(0, "s1") == 1
    await store.close()
    assert await client.ping()  # still usable: the caller closes it
    await client.aclose()
    text = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        await RedisStorage(redis_server.url, cluster_name, client=text).open()
    await text.aclose()


async def test_password_stays_out_of_messages() -> None:
    store = RedisStorage("redis://user:s3cret@127.0.0.1:1/0", "c", timeout=2.0)
    assert "s3cret" not in repr(store) and "user:***@" in repr(store)
    with pytest.raises(StorageError) as info:
        await store.open()
    assert "s3cret" not in str(info.value)


async def test_unreachable_server_fails_open_quickly(cluster_name: str) -> None:
    from tests.redis_server import free_port

    store = open_storage(f"redis://127.0.0.1:{free_port()}/0", cluster=cluster_name)
    started = time.monotonic()
    with pytest.raises(StorageError):
        await store.open()
    assert time.monotonic() - started < 5


async def test_server_restart_is_survived(tmp_path: Path, cluster_name: str) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    store = RedisStorage(server.url, cluster_name, timeout=5.0)
    try:
        await store.open()
        fence = await take(store)
        await commit_one(store, Commit(A, fence, rec(1), kv_writes={"x": b"1"}))
        assert await store.inbox_put(A, fence, InboxMessage("m", b"hi"))

        server.restart()  # every pooled connection is now dead
        admin = redis.asyncio.Redis.from_url(server.url)
        try:
            # Redis 7 forgets scripts on restart; 6.2 replays SCRIPT LOAD from the AOF.
            await admin.script_flush()
            await commit_one(store, Commit(A, fence, rec(2), kv_writes={"x": b"2"}))
            assert await admin.script_exists(COMMIT_MANY.sha) == [True]  # reloaded on NOSCRIPT
        finally:
            await admin.aclose()
        assert await seqs(store, A) == [1, 2]
        assert await store.kv_get(A, ["x"]) == {"x": b"2"}
        assert await store.inbox_read(A) == [InboxMessage("m", b"hi")]
        assert await store.claim(0, "s2") is None

        server.stop()
        outage: list[Any] = [
            store.owner(0),
            store.commit([Commit(A, fence, rec(3))]),
            store.claim(1, "s1"),
            store.inbox_actors([0]),
        ]
        for call in outage:
            started = time.monotonic()
            with pytest.raises(StorageError) as info:
                await asyncio.wait_for(call, 8)
            assert type(info.value) is StorageError
            assert time.monotonic() - started < 3

        server.start()
        await commit_one(store, Commit(A, fence, rec(3)))
        assert await seqs(store, A) == [1, 2, 3]
        await store.write_snapshot(A, fence, Snapshot(3, b"three"))
        assert await store.read_snapshot(A) == Snapshot(3, b"three")
    finally:
        await store.close()
        server.stop()


async def test_a_hung_server_is_a_timeout_not_a_hang(tmp_path: Path, cluster_name: str) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    store = RedisStorage(server.url, cluster_name, timeout=1.0)
    assert server.proc is not None
    try:
        await store.open()
        fence = await take(store)
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StorageError, match="timed out"):
                await store.commit([Commit(A, fence, rec(1))])
            assert time.monotonic() - started < 2
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        # The commit may or may not have landed; either way the store works again.
        [result] = await store.commit([Commit(A, fence, rec(1))])
        assert result is None or type(result) is StorageError
        assert await seqs(store, A) == [1]
        with pytest.raises(FencedWrite):
            await store.step_put(A, Fence(0, "s9", 1), "inv", 0, b"")
    finally:
        await store.close()
        server.stop()


def test_importing_storage_does_not_import_redis() -> None:
    code = "import sys, json, bayou.storage; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert not [m for m in loaded if m == "redis" or m.startswith("redis.")]
