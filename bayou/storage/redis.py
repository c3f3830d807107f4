"""The cluster store: every actor's records in Redis, fenced writes as Lua scripts.

Layout and encodings are in ``redis_keys``, the scripts in ``redis_scripts``. A commit is as
durable as the server's persistence makes it (AOF with ``appendfsync always`` for "fsynced
before the reply"; ``everysec`` loses up to a second on a server crash).

The URL picks the topology (``redis_clients``): one server, Redis Cluster, or the primary
a set of Sentinels names. On Redis Cluster every script run touches one slot (reads over
many partitions are pipelines, which redis-py splits per node, following MOVED and ASK),
and scripts are loaded on every primary at ``open`` and on any node that answers NOSCRIPT
later (a new or promoted one).

Failure model: every redis failure (refused connection, timeout, error reply) surfaces as
``StorageError``, never as a redis exception, and no call waits longer than ``timeout``.
The connection pool reconnects with exponential backoff and re-sends a command whose
connection broke, so a restarted server is used again as soon as it answers; scripts are
loaded again when the restarted server no longer knows them (NOSCRIPT). A re-sent write
never reports a false success: a re-sent commit that had landed reports its seq as a
duplicate, a re-sent claim returns the same epoch, a re-sent message is deduplicated.

Reminders follow the rules shared by every backend (``bayou.storage.memory``). Each lives
twice, changed together by one script: its definition in the actor's ``rm`` hash (what
``reminders_of`` reads) and its entry in the partition's ``rd`` sorted set, scored by due
time (what ``reminders_due`` reads). ``reminders_due`` merges the requested partitions'
index ranges (``EarliestDue``) in rounds of one round trip each (one script run on a
single Redis, a pipeline on Redis Cluster): every partition first sends
its earliest few entries (``ZRANGEBYSCORE ... LIMIT``), and only partitions that may still
hold one of the ``limit`` earliest are asked for more, so the entries read stay near
``limit`` plus a few per partition however many are due; then one more pipeline reads the
definitions. Those reads are not one snapshot: a reminder set, replaced or cancelled
during the call may be missed or reported with its new definition (never twice, never one
due after ``until``), which the next poll makes good.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio
from redis.exceptions import RedisClusterException, RedisError

from bayou.errors import BayouError, StorageError
from bayou.storage import redis_clients
from bayou.storage import redis_scripts as scripts
from bayou.storage.batching import TurnBatcher
from bayou.storage.contract import (
    ActorKey,
    ActorLoad,
    Commit,
    Fence,
    InboxMessage,
    InboxPut,
    JournalRecord,
    Ownership,
    Reminder,
    Snapshot,
    SnapshotPut,
    Storage,
)
from bayou.storage.memory import (
    EarliestDue,
    check_reminder,
    check_until,
    commit_reminder_error,
)
from bayou.storage.redis_clients import ClientProfile
from bayou.storage.redis_keys import (
    KeySpace,
    decode_actor,
    decode_reminder_member,
    decode_reminder_value,
    decode_step_field,
    encode_actor,
    encode_reminder_value,
    journal_floor,
    journal_seq,
    reminder_member,
    score,
    step_field,
    step_prefix,
)

# Reads and writes of large payloads (1 MB records) finish well within this on a LAN.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
# A connection idle this long is PINGed before use, so a dead one is replaced first.
HEALTH_CHECK_INTERVAL = 15
# Reconnect backoff: 50 ms, 100 ms, 200 ms. redis-py nests connect retries inside command
# retries, so a call against a server that is down fails after about 0.7 s: long enough to
# ride out a blip, short enough that callers see an outage quickly.
RETRIES = 3
BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
# Upper bound on any one storage call, whatever the retries and payloads do.
DEFAULT_TIMEOUT = 15.0
# Connections per silo: enough for every read of a burst of activations and the group
# commit's pipeline to proceed at once, few enough for a Redis serving many silos.
MAX_CONNECTIONS = 64

_JOURNAL_PAGE = 1000  # XRANGE entries per page
_LOAD_BATCH = 128  # actors per LOAD_MANY run: keeps each run (Redis is single-threaded) short
# What XRANGE returns with decode_responses=False (which open() insists on).
_Entries = list[tuple[bytes, dict[bytes, bytes]]]
_KV_CHUNK = 1000  # fields per HMGET
# A reminder index entry as the merge compares them: (due, partition, member).
_DueEntry = tuple[float, int, bytes]


STORAGE_PROFILE = ClientProfile(
    client_name="bayou-storage",
    socket_timeout=SOCKET_TIMEOUT,
    connect_timeout=CONNECT_TIMEOUT,
    retries=RETRIES,
    backoff_base=BACKOFF_BASE,
    backoff_cap=BACKOFF_CAP,
    retry_on_timeout=True,
    max_connections=MAX_CONNECTIONS,
    # redis-py's default pool fails with "Too many connections" instead of waiting, which
    # a burst of activations (each a few reads) reached at 256 concurrent first calls.
    blocking=True,
    health_check_interval=HEALTH_CHECK_INTERVAL,
    hiredis_packing=True,
)


def make_client(url: str) -> redis.asyncio.Redis:
    """A storage client for ``url`` (any form ``redis_clients`` reads) with bytes replies,
    socket timeouts, health checks, retries and at most ``MAX_CONNECTIONS`` connections
    (per node on Redis Cluster), callers beyond that waiting for one."""
    return redis_clients.make_client(url, STORAGE_PROFILE)


class RedisStorage(Storage):
    """A ``Storage`` in Redis, shared by every silo of cluster ``cluster``.

    Clusters sharing one Redis keep apart by name (every key contains it). ``client`` lets
    the caller supply a configured client (it must use ``decode_responses=False``); such a
    client is the caller's to close. Otherwise ``open()`` builds one from ``url`` and
    ``close()`` closes it; a closed store refuses calls until opened again.

    A group commit is one script run for the whole batch (``COMMIT_MANY``) unless the client
    is a Redis Cluster client (a batch spans hash slots), where it is one ``COMMIT`` run per
    commit in one pipeline; ``batch_commits`` overrides the choice (which also picks how
    ``reminders_due`` reads many partitions: one script run, or a pipeline).

    ``wait_replicas`` (default: the URL's ``wait_replicas``, else 0) makes every group
    commit and every stored tell wait, on the connection that wrote it, until that many
    replicas confirm it (``WAIT n wait_timeout_ms``, one per batch); a batch not confirmed
    in time is reported failed, as a write not known to be durable.
    """

    # Redis works in a process of its own, beside the silo. Without a bound, the calls in
    # flight travel in one batch each way: the silo runs all their turns while Redis idles,
    # then Redis writes them all while the silo idles. Bounded, Redis writes one part while
    # the silo runs the next. With 256 durable calls in flight over the link (bench/cpu.py
    # add-link, interleaved runs) a bound of 96 made 15,591-16,552 calls/s against
    # 13,495-13,948 unbounded (512), 14,060-15,495 at 48 and 14,860-15,185 at 160; plain HTTP
    # gained about a tenth too, and an in-process caller neither gained nor lost. The
    # embedded store, whose every batch is an fsync in the silo's own process, lost a fifth
    # at 96: hence a bound per store.
    commit_batch: ClassVar[int] = 96

    def __init__(
        self,
        url: str,
        cluster: str,
        *,
        client: redis.asyncio.Redis | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        batch_commits: bool | None = None,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
    ) -> None:
        self.url = url
        self.keys = KeySpace(cluster)
        self.timeout = timeout
        target = redis_clients.parse_url(url) if client is None else None
        self.wait_replicas = (
            wait_replicas if wait_replicas is not None else target.wait_replicas if target else 0
        )
        self.wait_timeout_ms = (
            wait_timeout_ms
            if wait_timeout_ms is not None
            else target.wait_timeout_ms
            if target
            else redis_clients.DEFAULT_WAIT_TIMEOUT_MS
        )
        # Redis Cluster's per-node pools fail a command past their limit instead of waiting,
        # so the store itself admits at most MAX_CONNECTIONS calls at once there (each holds
        # at most one connection per node); a single server's pool does the waiting itself.
        self._gate: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
        # One script run per group commit (single Redis) or one per commit (Redis Cluster);
        # None decides by the client's type when the first batch is written.
        self.batch_commits = batch_commits
        self._given = client
        self._client: redis.asyncio.Redis | None = None
        # The loads asked for in one loop turn share one script run (see load_actor).
        self._loader: TurnBatcher[ActorKey, ActorLoad] = TurnBatcher(self._load_many, _LOAD_BATCH)

    def __repr__(self) -> str:
        return f"RedisStorage({_redacted(self.url)!r}, {self.keys.cluster!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check the server answers and load the scripts; a no-op if open."""
        if self._client is not None:
            return
        client = self._given or make_client(self.url)
        if redis_clients.decodes_responses(client):
            raise ValueError("RedisStorage needs a client with decode_responses=False")
        try:
            async with self._guard("open"):
                if redis_clients.is_cluster(client):
                    if self.wait_replicas:
                        raise ValueError("wait_replicas is not supported on Redis Cluster yet")
                    self._gate = asyncio.Semaphore(MAX_CONNECTIONS)
                    # SCRIPT LOAD goes to every primary; a node that joins or is promoted
                    # later answers NOSCRIPT once and is loaded then (scripts.run).
                    await client.ping()
                    for script in scripts.SCRIPTS:
                        await client.script_load(script.source)
                else:
                    pipe = client.pipeline(transaction=False)
                    pipe.ping()
                    for script in scripts.SCRIPTS:
                        pipe.script_load(script.source)
                    await pipe.execute()
        except BaseException:
            if client is not self._given:
                await client.aclose()
            raise
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client is not self._given:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    @contextlib.asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """Bound the block by ``timeout`` and turn every redis failure into StorageError."""
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except TimeoutError as exc:  # asyncio's deadline, or a socket timeout (RedisError)
            raise StorageError(f"{self!r}: {what} timed out after {self.timeout}s") from exc
        # RedisClusterException (no node reachable, a slot nobody serves) is no RedisError.
        except (RedisError, RedisClusterException, OSError, ValueError) as exc:
            raise StorageError(f"{self!r}: {what} failed: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _session(self, what: str) -> AsyncIterator[redis.asyncio.Redis]:
        client = self._client
        if client is None:
            raise StorageError(f"{self!r} is not open")
        async with self._guard(what), self._gate:
            yield client

    # -- ownership -------------------------------------------------------------------------

    async def claim(self, partition: int, silo: str, dead: Collection[str] = ()) -> int | None:
        async with self._session("claim") as client:
            epoch = await scripts.run(
                client, scripts.CLAIM, [self.keys.owner(partition)], [silo, *dead]
            )
        return None if epoch < 0 else int(epoch)

    async def release(self, fence: Fence) -> bool:
        async with self._session("release") as client:
            released = await scripts.run(
                client, scripts.RELEASE, [self.keys.owner(fence.partition)], _fence_args(fence)
            )
        return bool(released)

    async def owner(self, partition: int) -> Ownership:
        async with self._session("owner") as client:
            silo, epoch = await client.hmget(self.keys.owner(partition), [b"silo", b"epoch"])
        return Ownership(
            partition, None if silo is None else _bytes(silo).decode(), int(epoch or 0)
        )

    # -- journal ---------------------------------------------------------------------------

    async def commit(self, batch: Sequence[Commit]) -> list[BaseException | None]:
        """The whole batch in one round trip: on a single Redis one ``COMMIT_MANY`` run
        (one script call for every commit); on Redis Cluster, whose scripts may touch one
        hash slot only, one ``COMMIT`` run per commit, all in one pipeline."""
        results: list[BaseException | None] = [None] * len(batch)
        sent: list[int] = []
        for i, one in enumerate(batch):
            malformed = commit_reminder_error(one) if one.reminders else None
            if malformed is not None:
                results[i] = malformed
            elif one.actor.partition != one.fence.partition:
                results[i] = scripts.wrong_partition(one.actor, one.fence)
            elif one.record.seq < 0:
                # Stream ids are unsigned; no backend ever sees a negative seq from the runtime.
                results[i] = StorageError(f"{one.actor}: journal seq {one.record.seq} < 0")
            else:
                sent.append(i)
        async with self._session("commit") as client:
            if not sent:
                replies: list[Any] = []
            elif self._single_node(client):
                calls = [self._batched_call(batch[i]) for i in sent]
                replies = await scripts.run_batch(client, scripts.COMMIT_MANY, calls, self._wait())
            else:
                calls = [self._commit_call(batch[i]) for i in sent]
                replies = await scripts.run_many(client, scripts.COMMIT, calls, self._wait())
        for i, reply in zip(sent, replies, strict=True):
            one = batch[i]
            results[i] = scripts.outcome(reply, one.actor, one.fence, one.record.seq)
        return results

    def _wait(self) -> scripts.Wait | None:
        """WAIT's arguments after an acknowledged write, or None when no replica must confirm."""
        return (self.wait_replicas, self.wait_timeout_ms) if self.wait_replicas else None

    def _batched_call(self, commit: Commit) -> scripts.Call:
        """A commit as ``COMMIT_MANY`` takes it: a plain append when the turn wrote only its
        record (and maybe acked its inbox message: no kv, steps or reminders), else the
        whole commit."""
        if commit.kv_writes or commit.reminders or commit.clear_steps or commit.sends:
            return self._commit_call(commit)
        fence, record = commit.fence, commit.record
        args = (fence.silo, str(fence.epoch), str(record.seq), bytes(record.data))
        if commit.inbox_ack is None:
            return self.keys.append_keys(commit.actor), args
        keys, member = self.keys.append_ack_keys(commit.actor)
        return keys, (*args, member, commit.inbox_ack)

    def _single_node(self, client: object) -> bool:
        if self.batch_commits is None:
            self.batch_commits = not redis_clients.is_cluster(client)
        return self.batch_commits

    def _commit_call(self, commit: Commit) -> scripts.Call:
        keys, member = self.keys.commit_keys(commit.actor)
        sets: list[bytes | str] = []
        deletes: list[str] = []
        for k, v in commit.kv_writes.items():
            if v is None:
                deletes.append(k)
            else:
                sets += (k, bytes(v))
        reminds: list[bytes] = []
        cancels: list[bytes] = []
        for name, reminder in commit.reminders.items():
            indexed = reminder_member(commit.actor, name)
            if reminder is None:
                cancels += (name.encode(), indexed)
            else:
                reminds += (name.encode(), indexed, *_reminder_args(reminder))
        args: list[Any] = [
            *_fence_args(commit.fence),
            str(commit.record.seq),
            bytes(commit.record.data),
            member,
            "0" if commit.inbox_ack is None else "1",
            commit.inbox_ack or "",
            "0" if commit.clear_steps is None else "1",
            b"" if commit.clear_steps is None else step_prefix(commit.clear_steps),
            str(len(sets) // 2),
            *sets,
            str(len(deletes)),
            *deletes,
            str(len(reminds) // 4),
            *reminds,
            str(len(cancels) // 2),
            *cancels,
            "1" if commit.sends else "0",
        ]
        return keys, args

    async def read_journal(self, actor: ActorKey, after_seq: int = 0) -> list[JournalRecord]:
        key = self.keys.journal(actor)
        start = journal_floor(after_seq + 1)
        records: list[JournalRecord] = []
        async with self._session("read_journal") as client:
            while True:
                page = cast(_Entries, await client.xrange(key, start, b"+", count=_JOURNAL_PAGE))
                records += (JournalRecord(journal_seq(eid), fields[b"d"]) for eid, fields in page)
                if len(page) < _JOURNAL_PAGE:
                    return records
                start = journal_floor(records[-1].seq + 1)

    # -- snapshots -------------------------------------------------------------------------

    async def write_snapshot(self, actor: ActorKey, fence: Fence, snapshot: Snapshot) -> None:
        if actor.partition != fence.partition:
            raise scripts.wrong_partition(actor, fence)
        keys, args = self._snapshot_call(actor, fence, snapshot)
        async with self._session("write_snapshot") as client:
            reply = await scripts.run(client, scripts.WRITE_SNAPSHOT, keys, args)
        scripts.check(reply, fence)

    async def write_snapshots(self, batch: Sequence[SnapshotPut]) -> list[BaseException | None]:
        """One ``WRITE_SNAPSHOT`` run per snapshot, all in one pipeline (one round trip)."""
        results: list[BaseException | None] = [None] * len(batch)
        sent: list[int] = []
        calls: list[scripts.Call] = []
        for i, put in enumerate(batch):
            if put.actor.partition != put.fence.partition:
                results[i] = scripts.wrong_partition(put.actor, put.fence)
                continue
            sent.append(i)
            calls.append(self._snapshot_call(put.actor, put.fence, put.snapshot))
        if not calls:
            return results
        async with self._session("write_snapshots") as client:
            replies = await scripts.run_many(client, scripts.WRITE_SNAPSHOT, calls, self._wait())
        for i, reply in zip(sent, replies, strict=True):
            put = batch[i]
            if isinstance(reply, StorageError):
                results[i] = reply  # written, but too few replicas confirmed it in time
            elif isinstance(reply, Exception):
                results[i] = StorageError(f"{put.actor}: redis snapshot write failed: {reply}")
            else:
                try:
                    scripts.check(reply, put.fence)
                except BayouError as exc:
                    results[i] = exc
        return results

    def _snapshot_call(self, actor: ActorKey, fence: Fence, snapshot: Snapshot) -> scripts.Call:
        keys = self.keys
        own, snapshot_key, journal, outboxes = (
            keys.owner(actor.partition),
            keys.snapshot(actor),
            keys.journal(actor),
            keys.outboxes(actor.partition),
        )
        # The journal keeps records with seq > snapshot.seq: stream ids from <seq + 1>-0 up.
        trim = journal_floor(snapshot.seq + 1)
        member = encode_actor(actor)
        args = (*_fence_args(fence), str(snapshot.seq), bytes(snapshot.data), trim, member)
        return (own, snapshot_key, journal, outboxes), args

    async def read_snapshot(self, actor: ActorKey) -> Snapshot | None:
        async with self._session("read_snapshot") as client:
            seq, data = await client.hmget(self.keys.snapshot(actor), [b"seq", b"data"])
        return None if seq is None else Snapshot(int(seq), _bytes(data))

    # -- kv --------------------------------------------------------------------------------

    async def kv_get(self, actor: ActorKey, keys: Sequence[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(keys))
        key = self.keys.kv(actor)
        async with self._session("kv_get") as client:
            if not wanted:
                return {}
            pipe = client.pipeline(transaction=False)
            for start in range(0, len(wanted), _KV_CHUNK):
                pipe.hmget(key, wanted[start : start + _KV_CHUNK])
            chunks: list[list[bytes | None]] = await pipe.execute()
        values = [v for chunk in chunks for v in chunk]
        return {k: v for k, v in zip(wanted, values, strict=True) if v is not None}

    # -- inbox -----------------------------------------------------------------------------

    async def inbox_put(self, actor: ActorKey, fence: Fence, message: InboxMessage) -> bool:
        if actor.partition != fence.partition:
            raise scripts.wrong_partition(actor, fence)
        keys = self.keys.actor(actor)
        args = [*_fence_args(fence), message.id, bytes(message.data), keys.member]
        call_keys = [keys.own, keys.inbox, keys.inbox_order, keys.inboxes]
        async with self._session("inbox_put") as client:
            if self.wait_replicas:
                # The 202 of a tell is an acknowledgement too: its WAIT shares its pipeline.
                [reply] = await scripts.run_many(
                    client, scripts.INBOX_PUT, [(call_keys, args)], self._wait()
                )
                if isinstance(reply, Exception):
                    raise reply
            else:
                reply = await scripts.run(client, scripts.INBOX_PUT, call_keys, args)
        return bool(scripts.check(reply, fence)[1])

    async def inbox_put_many(self, batch: Sequence[InboxPut]) -> list[bool | BaseException]:
        """One round trip: on a single Redis one ``INBOX_PUT_MANY`` run for the batch, on
        Redis Cluster one ``INBOX_PUT`` run per message in one pipeline."""
        results: list[bool | BaseException] = [False] * len(batch)
        sent: list[int] = []
        calls: list[scripts.Call] = []
        for i, put in enumerate(batch):
            actor, fence = put.actor, put.fence
            if actor.partition != fence.partition:
                results[i] = scripts.wrong_partition(actor, fence)
                continue
            keys, member = self.keys.inbox_put_keys(actor)
            message = put.message
            args = (fence.silo, str(fence.epoch), message.id, bytes(message.data), member)
            sent.append(i)
            calls.append((keys, args))
        async with self._session("inbox_put_many") as client:
            if not calls:
                replies: list[Any] = []
            elif self._single_node(client):
                replies = await scripts.run_batch(
                    client, scripts.INBOX_PUT_MANY, calls, self._wait()
                )
            else:
                replies = await scripts.run_many(client, scripts.INBOX_PUT, calls, self._wait())
            for i, reply in zip(sent, replies, strict=True):
                if isinstance(reply, StorageError):
                    results[i] = reply  # stored, but too few replicas confirmed it in time
                    continue
                fence = batch[i].fence
                if isinstance(reply, Exception):
                    results[i] = StorageError(f"{batch[i].actor}: redis inbox put failed: {reply}")
                    continue
                code = scripts.status(reply)
                if code == scripts.FENCED:
                    results[i] = scripts.fenced_write(fence, reply)
                elif code == scripts.FAILED:
                    detail = reply[1] if len(reply) > 1 else None
                    results[i] = StorageError(
                        f"{batch[i].actor}: redis inbox put failed: {detail!r}"
                    )
                else:
                    results[i] = bool(scripts.check(reply, fence)[1])
        return results

    async def inbox_read(self, actor: ActorKey) -> list[InboxMessage]:
        keys = [self.keys.inbox_order(actor), self.keys.inbox(actor)]
        async with self._session("inbox_read") as client:
            # One script run: the order and the payloads are read at one instant (on every
            # topology; MULTI/EXEC on Redis Cluster costs redis-py a thread per command).
            ids, flat = await scripts.run(client, scripts.INBOX_READ, keys, [])
        payloads = _pairs(flat)
        return [InboxMessage(i.decode(), payloads[i]) for i in ids if i in payloads]

    async def inbox_actors(self, partitions: Collection[int]) -> list[ActorKey]:
        wanted = sorted(set(partitions))
        async with self._session("inbox_actors") as client:
            if not wanted:
                return []
            pipe = client.pipeline(transaction=False)
            for partition in wanted:
                pipe.smembers(self.keys.inboxes(partition))
            members: list[set[bytes]] = await pipe.execute()
            found = [
                (decode_actor(member, partition), member)
                for partition, group in zip(wanted, members, strict=True)
                for member in group
            ]
            if found:
                # An actor stays listed only while its inbox holds a message. Entries left
                # behind with an empty inbox (by versions that acked a reminder's message
                # under the wrong member) are dropped here, atomically, so a hand-off does
                # not wake those actors for nothing again and again.
                calls: list[scripts.Call] = [
                    ((self.keys.inboxes(actor.partition), self.keys.inbox(actor)), (member,))
                    for actor, member in found
                ]
                pruned = await scripts.run_many(client, scripts.INBOXES_PRUNE, calls)
                found = [f for f, gone in zip(found, pruned, strict=True) if gone != 1]
        return sorted((actor for actor, _ in found), key=lambda a: (a.partition, a.type, a.key))

    async def outbox_actors(self, partitions: Collection[int]) -> list[ActorKey]:
        wanted = sorted(set(partitions))
        if not wanted:
            return []
        async with self._session("outbox_actors") as client:
            pipe = client.pipeline(transaction=False)
            for partition in wanted:
                pipe.hkeys(self.keys.outboxes(partition))
            members: list[list[bytes]] = await pipe.execute()
        found = [
            decode_actor(member, partition)
            for partition, group in zip(wanted, members, strict=True)
            for member in group
        ]
        return sorted(found, key=lambda a: (a.partition, a.type, a.key))

    # -- steps -----------------------------------------------------------------------------

    async def step_put(
        self, actor: ActorKey, fence: Fence, invocation: str, index: int, data: bytes
    ) -> None:
        if actor.partition != fence.partition:
            raise scripts.wrong_partition(actor, fence)
        keys = [self.keys.owner(actor.partition), self.keys.steps(actor)]
        args = [*_fence_args(fence), step_field(invocation, index), bytes(data)]
        async with self._session("step_put") as client:
            reply = await scripts.run(client, scripts.STEP_PUT, keys, args)
        scripts.check(reply, fence)

    async def steps_read(self, actor: ActorKey, invocation: str) -> list[bytes]:
        return (await self._steps(actor, "steps_read")).get(invocation, [])

    async def steps_pending(self, actor: ActorKey) -> dict[str, list[bytes]]:
        return await self._steps(actor, "steps_pending")

    # -- reminders -------------------------------------------------------------------------

    async def reminder_set(self, fence: Fence, reminder: Reminder) -> None:
        check_reminder(reminder)
        actor = reminder.actor
        if actor.partition != fence.partition:
            raise scripts.wrong_partition(actor, fence)
        keys = [
            self.keys.owner(actor.partition),
            self.keys.reminders(actor),
            self.keys.reminder_index(actor.partition),
        ]
        args = [
            *_fence_args(fence),
            reminder.name.encode(),
            reminder_member(actor, reminder.name),
            *_reminder_args(reminder),
        ]
        async with self._session("reminder_set") as client:
            reply = await scripts.run(client, scripts.REMINDER_SET, keys, args)
        scripts.check(reply, fence)

    async def reminder_cancel(self, fence: Fence, actor: ActorKey, name: str) -> bool:
        if actor.partition != fence.partition:
            raise scripts.wrong_partition(actor, fence)
        keys = [
            self.keys.owner(actor.partition),
            self.keys.reminders(actor),
            self.keys.reminder_index(actor.partition),
        ]
        args = [*_fence_args(fence), name.encode(), reminder_member(actor, name)]
        async with self._session("reminder_cancel") as client:
            reply = await scripts.run(client, scripts.REMINDER_CANCEL, keys, args)
        return bool(scripts.check(reply, fence)[1])

    async def reminders_of(self, actor: ActorKey) -> list[Reminder]:
        async with self._session("reminders_of") as client:
            fields = cast(dict[bytes, bytes], await client.hgetall(self.keys.reminders(actor)))
            found = [_reminder(actor, name.decode(), value) for name, value in fields.items()]
        return sorted(found, key=lambda r: r.name)

    async def reminders_due(
        self, partitions: Collection[int], until: float, limit: int = 1000
    ) -> list[Reminder]:
        check_until(until)
        wanted = sorted(set(partitions))
        async with self._session("reminders_due") as client:
            if not wanted or limit <= 0:
                return []
            entries = await self._earliest(client, wanted, until, limit)
            # Group by actor: one HMGET of each actor's definitions, all in one pipeline.
            named: dict[ActorKey, list[str]] = {}
            for _, partition, member in entries:
                actor, name = decode_reminder_member(member, partition)
                named.setdefault(actor, []).append(name)
            pipe = client.pipeline(transaction=False)
            for actor, names in named.items():
                pipe.hmget(self.keys.reminders(actor), [name.encode() for name in names])
            values: list[list[bytes | None]] = await pipe.execute() if named else []
            found = [
                _reminder(actor, name, value)
                for (actor, names), group in zip(named.items(), values, strict=True)
                for name, value in zip(names, group, strict=True)
                if value is not None  # cancelled since the index was read
            ]
        # A reminder replaced since the index was read carries its new due time.
        found = [r for r in found if r.due <= until]
        found.sort(key=lambda r: (r.due, r.actor.partition, r.actor.type, r.actor.key, r.name))
        return found

    async def _earliest(
        self, client: redis.asyncio.Redis, partitions: list[int], until: float, limit: int
    ) -> list[_DueEntry]:
        """The ``limit`` earliest index entries due by ``until``: ``EarliestDue`` rounds,
        each one pipeline of ``ZRANGEBYSCORE ... LIMIT offset count``."""
        merge: EarliestDue[bytes] = EarliestDue(partitions, limit)
        max_score = score(until).decode()
        while ranges := merge.ranges():
            if self._single_node(client):
                # A single Redis: the round in one script run (a silo polls all of its
                # partitions every second; a pipeline of a thousand commands costs the
                # silo tens of milliseconds of CPU to build and parse).
                keys = [self.keys.reminder_index(p) for p, _, _ in ranges]
                args: list[Any] = [max_score]
                for _, offset, count in ranges:
                    args += (offset, count)
                rows = await scripts.run(client, scripts.EARLIEST_DUE, keys, args)
                merge.add(
                    [[(float(row[i + 1]), row[i]) for i in range(0, len(row), 2)] for row in rows]
                )
                continue
            pipe = client.pipeline(transaction=False)
            for p, offset, count in ranges:
                pipe.zrangebyscore(
                    self.keys.reminder_index(p),
                    "-inf",
                    max_score,
                    start=offset,
                    num=count,
                    withscores=True,
                )
            replies: list[list[tuple[bytes, float]]] = await pipe.execute()
            merge.add([[(due, member) for member, due in rows] for rows in replies])
        return merge.earliest

    async def _steps(self, actor: ActorKey, what: str) -> dict[str, list[bytes]]:
        """Every invocation's steps from index 0 up to the first gap; those without 0 left out.

        One HGETALL of the actor's pending steps: they are few (only invocations that were
        interrupted mid-way), so reading them all is cheaper than a scan per invocation.
        """
        async with self._session(what) as client:
            fields = cast(dict[bytes, bytes], await client.hgetall(self.keys.steps(actor)))
            return _pending_steps(fields)

    # -- activation ------------------------------------------------------------------------

    async def load_actor(self, actor: ActorKey) -> ActorLoad:
        """Everything an activation reads, as of one instant: the snapshot, the journal,
        the pending steps and the inbox; a journal longer than a page (snapshots keep it
        short) is read on in pages after it.

        On a single Redis the loads asked for in one loop turn share one ``LOAD_MANY`` run
        (a burst of first calls, or a failover's reactivations, costs one round trip per
        batch, not one per actor); on Redis Cluster, whose scripts cannot span slots, each
        is one ``LOAD_MANY`` run of its own."""
        client = self._client
        if client is None or not self._single_node(client):
            return await self._load_one(actor)
        return await self._loader.submit(actor)

    async def _load_many(self, actors: list[ActorKey]) -> list[ActorLoad | BaseException]:
        keys: list[Any] = []
        for actor in actors:
            ak = self.keys.actor(actor)
            keys += (ak.snapshot, ak.journal, ak.steps, ak.inbox_order, ak.inbox)
        async with self._session("load_actor") as client:
            replies = await scripts.run(client, scripts.LOAD_MANY, keys, [_JOURNAL_PAGE])
        if not isinstance(replies, list) or len(replies) != len(actors):
            raise StorageError(f"unexpected reply from load_many: {replies!r:.200}")
        return [
            await self._loaded(actor, reply) for actor, reply in zip(actors, replies, strict=True)
        ]

    async def _load_one(self, actor: ActorKey) -> ActorLoad:
        """One actor's ``LOAD_MANY`` run: its keys share a slot, so this runs on Redis
        Cluster too (where MULTI/EXEC would cost redis-py a thread per queued command)."""
        ak = self.keys.actor(actor)
        keys = [ak.snapshot, ak.journal, ak.steps, ak.inbox_order, ak.inbox]
        async with self._session("load_actor") as client:
            replies = await scripts.run(client, scripts.LOAD_MANY, keys, [_JOURNAL_PAGE])
        if not isinstance(replies, list) or len(replies) != 1:
            raise StorageError(f"unexpected reply from load_many: {replies!r:.200}")
        return await self._loaded(actor, replies[0])

    async def _loaded(self, actor: ActorKey, reply: Any) -> ActorLoad:
        """The ``ActorLoad`` of one actor's ``LOAD_MANY`` reply; a journal longer than the
        first page is read on after it."""
        (seq, data), page, steps, ids, payloads = reply
        entries = [(eid, _pairs(fields)) for eid, fields in page]
        load = self._actor_load(seq, data, entries, _pairs(steps), ids, _pairs(payloads))
        if len(page) == _JOURNAL_PAGE:
            after = 0 if load.snapshot is None else load.snapshot.seq
            load.journal.extend(
                await self.read_journal(actor, max(journal_seq(page[-1][0]), after))
            )
        return load

    @staticmethod
    def _actor_load(
        seq: Any,
        data: Any,
        page: _Entries,
        steps: dict[bytes, bytes],
        ids: list[bytes],
        payloads: dict[bytes, bytes],
    ) -> ActorLoad:
        snapshot = None if seq is None else Snapshot(int(seq), _bytes(data))
        after = 0 if snapshot is None else snapshot.seq
        journal = [
            JournalRecord(s, fields[b"d"])
            for eid, fields in page
            if (s := journal_seq(eid)) > after
        ]
        inbox = [InboxMessage(i.decode(), payloads[i]) for i in ids if i in payloads]
        return ActorLoad(snapshot, journal, _pending_steps(steps), inbox)


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """A hash as Lua returns it (field, value, field, value, ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _pending_steps(fields: dict[bytes, bytes]) -> dict[str, list[bytes]]:
    """Every invocation's steps from index 0 up to the first gap; those without 0 left out."""
    by_invocation: dict[str, dict[int, bytes]] = {}
    for name, data in fields.items():
        invocation, index = decode_step_field(name)
        by_invocation.setdefault(invocation, {})[index] = data
    pending: dict[str, list[bytes]] = {}
    for invocation, steps in by_invocation.items():
        contiguous: list[bytes] = []
        while len(contiguous) in steps:
            contiguous.append(steps[len(contiguous)])
        if contiguous:
            pending[invocation] = contiguous
    return pending


def _redacted(url: str) -> str:
    """``url`` without its password: the repr ends up in error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise StorageError(f"unexpected value from redis: {value!r}")
    return value


def _fence_args(fence: Fence) -> list[str]:
    return [fence.silo, str(fence.epoch)]


def _reminder_args(reminder: Reminder) -> tuple[bytes, bytes]:
    """The due score and the stored value of a (validated) reminder."""
    value = encode_reminder_value(reminder.due, reminder.period, bytes(reminder.data))
    return score(reminder.due), value


def _reminder(actor: ActorKey, name: str, value: bytes) -> Reminder:
    try:
        due, period, data = decode_reminder_value(value)
    except ValueError as exc:
        raise StorageError(f"reminder {name!r} of {actor}: {exc}") from exc
    return Reminder(actor, name, due, period, data)
