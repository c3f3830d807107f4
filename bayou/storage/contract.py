"""The storage contract every backend fulfils: journal, snapshots, kv, inbox, steps, ownership.

Storage sees actors only as ``(type, key, partition)`` and payloads only as bytes; it never
imports an actor class. Every write that belongs to an actor is *fenced*: it carries the
partition's ``{silo, epoch}`` and is rejected with ``FencedWrite`` unless the partition is
still owned by that silo at that epoch, checked atomically with the write itself.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from bayou.errors import FencedWrite


@dataclass(frozen=True, slots=True)
class ActorKey:
    """Where an actor's records live: its type name, its key, and its partition."""

    type: str
    key: str
    partition: int

    def __str__(self) -> str:
        return f"{self.type}/{self.key}"


@dataclass(frozen=True, slots=True)
class Fence:
    """Proof of ownership a writer presents: the partition, its owner and the epoch held."""

    partition: int
    silo: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Ownership:
    """The ownership record of one partition. ``silo`` is None once released."""

    partition: int
    silo: str | None
    epoch: int


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One committed invocation, ``seq`` counting from 1 per actor; ``data`` is opaque."""

    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An actor's state as of journal record ``seq`` (0 = before any record)."""

    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """A durable one-way message waiting for its actor; ``id`` is unique per actor."""

    id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Reminder:
    """A durable, named wake-up of one actor: due at ``due`` (epoch seconds), then every
    ``period`` seconds if it is periodic; ``data`` is opaque (what to deliver)."""

    actor: ActorKey
    name: str
    due: float
    period: float | None
    data: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """Everything one invocation makes durable, applied all-or-nothing.

    ``kv_writes`` maps a kv key to its new value, or to None to delete it. ``inbox_ack``
    removes the inbox message this invocation consumed; ``clear_steps`` drops the pending
    step results recorded under that invocation id (they now live in ``record``).
    ``reminders`` maps a reminder name of this actor to its new definition (set or
    replace), or to None to cancel it. ``sends`` says the record carries tells that are
    delivered after the commit: the actor is then listed by ``outbox_actors`` until a
    snapshot at or past this record, so that a crash before delivery, or an activation
    that nothing else wakes, cannot strand them in the journal.
    """

    actor: ActorKey
    fence: Fence
    record: JournalRecord
    kv_writes: Mapping[str, bytes | None] = field(default_factory=dict)
    inbox_ack: str | None = None
    clear_steps: str | None = None
    reminders: Mapping[str, Reminder | None] = field(default_factory=dict)
    sends: bool = False


@dataclass(frozen=True, slots=True)
class InboxPut:
    """One ``inbox_put`` of a batch (``Storage.inbox_put_many``)."""

    actor: ActorKey
    fence: Fence
    message: InboxMessage


@dataclass(frozen=True, slots=True)
class SnapshotPut:
    """One ``write_snapshot`` of a batch (``Storage.write_snapshots``)."""

    actor: ActorKey
    fence: Fence
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class ActorLoad:
    """Everything an activation reads from storage: the latest snapshot (None if none),
    the journal records after it, the pending steps of uncommitted invocations (as
    ``steps_pending``) and the waiting inbox messages (as ``inbox_read``)."""

    snapshot: Snapshot | None
    journal: list[JournalRecord]
    steps: dict[str, list[bytes]]
    inbox: list[InboxMessage]


class Storage(abc.ABC):
    """One store for everything an actor makes durable. Backends: memory, sqlite, redis."""

    # The most writes a silo's group commit hands this store in one call. A store in the
    # silo's own process does its work between the silo's turns, not beside them, so the
    # fewer calls (and fsyncs) the better: only a store that runs elsewhere asks for less.
    commit_batch: ClassVar[int] = 512

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect, create schemas; called once before any other method."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources; the store is unusable afterwards."""

    # -- ownership -------------------------------------------------------------------------

    @abc.abstractmethod
    async def claim(self, partition: int, silo: str, dead: Collection[str] = ()) -> int | None:
        """Take ``partition`` for ``silo`` and return the epoch it now holds.

        Succeeds if the partition is unowned (never owned or released), already owned by
        ``silo`` (same epoch returned, no bump), or owned by a silo in ``dead``. Taking it
        from anyone else or from nobody bumps the epoch. Returns None when a live silo holds it.
        """

    @abc.abstractmethod
    async def release(self, fence: Fence) -> bool:
        """Give up the partition if ``fence`` still holds it; the epoch stays for the next claim."""

    @abc.abstractmethod
    async def owner(self, partition: int) -> Ownership:
        """The partition's ownership record (``silo=None, epoch=0`` if never owned)."""

    # -- journal ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def commit(self, batch: Sequence[Commit]) -> list[BaseException | None]:
        """Apply each commit atomically and independently; one result per commit, in order.

        A result is None on success, ``FencedWrite`` if its fence no longer holds, or
        ``StorageError`` if its record's seq already exists. A backend failure raises instead.
        """

    @abc.abstractmethod
    async def read_journal(self, actor: ActorKey, after_seq: int = 0) -> list[JournalRecord]:
        """Records with ``seq > after_seq``, in order."""

    # -- snapshots -------------------------------------------------------------------------

    @abc.abstractmethod
    async def write_snapshot(self, actor: ActorKey, fence: Fence, snapshot: Snapshot) -> None:
        """Store the snapshot and trim the journal up to and including ``snapshot.seq``;
        the actor leaves ``outbox_actors`` if its last record with tells is at or below
        ``snapshot.seq`` (the runtime snapshots only once those tells are delivered).

        Raises ``FencedWrite`` if the fence no longer holds. A snapshot older than the one
        stored is ignored (never moves the actor back in time).
        """

    async def write_snapshots(self, batch: Sequence[SnapshotPut]) -> list[BaseException | None]:
        """``write_snapshot`` of each, independently; one result per snapshot, in order:
        None once written, or its ``FencedWrite``. A backend failure raises instead (a
        snapshot rewritten is harmless: the same seq replaces, an older one is ignored).

        The group committer sends the snapshots due in one loop turn here together. This
        default writes them one after another; a backend overrides it to write them in one
        round trip.
        """
        results: list[BaseException | None] = []
        for put in batch:
            try:
                await self.write_snapshot(put.actor, put.fence, put.snapshot)
            except FencedWrite as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    @abc.abstractmethod
    async def read_snapshot(self, actor: ActorKey) -> Snapshot | None:
        """The latest snapshot, or None if none was ever written."""

    # -- kv (entity state) -----------------------------------------------------------------

    @abc.abstractmethod
    async def kv_get(self, actor: ActorKey, keys: Sequence[str]) -> dict[str, bytes]:
        """Values of the given keys that exist; missing keys are absent from the result."""

    # -- inbox (durable one-way messages) --------------------------------------------------

    @abc.abstractmethod
    async def inbox_put(self, actor: ActorKey, fence: Fence, message: InboxMessage) -> bool:
        """Store a message unless one with the same id is already there; True if stored now."""

    async def inbox_put_many(self, batch: Sequence[InboxPut]) -> list[bool | BaseException]:
        """``inbox_put`` of each, independently; one result per put, in order: True if
        stored now, False if a message with that id was waiting already, or the put's
        ``FencedWrite``. A backend failure raises instead (puts before it may have landed:
        each is idempotent by message id, so the caller retries them all).

        The group committer sends the tells accepted in one loop turn here together. This
        default puts them one after another; a backend overrides it to write them in one
        round trip (one transaction).
        """
        results: list[bool | BaseException] = []
        for put in batch:
            try:
                results.append(await self.inbox_put(put.actor, put.fence, put.message))
            except FencedWrite as exc:
                results.append(exc)
        return results

    @abc.abstractmethod
    async def inbox_read(self, actor: ActorKey) -> list[InboxMessage]:
        """Waiting messages in the order they were stored."""

    @abc.abstractmethod
    async def inbox_actors(self, partitions: Collection[int]) -> list[ActorKey]:
        """Actors of these partitions that have waiting messages (to wake after a restart)."""

    @abc.abstractmethod
    async def outbox_actors(self, partitions: Collection[int]) -> list[ActorKey]:
        """Actors of these partitions with a journal record that carries tells (``Commit.
        sends``) after their latest snapshot: their tells may not all have been delivered,
        so a new owner activates them to send those again. Ordered as ``inbox_actors``."""

    # -- steps (results of ctx.run persisted before the invocation commits) ----------------

    @abc.abstractmethod
    async def step_put(
        self, actor: ActorKey, fence: Fence, invocation: str, index: int, data: bytes
    ) -> None:
        """Persist step ``index`` of an uncommitted invocation (overwrites the same index)."""

    @abc.abstractmethod
    async def steps_read(self, actor: ActorKey, invocation: str) -> list[bytes]:
        """Persisted steps of an uncommitted invocation, by index from 0, stopping at a gap."""

    # -- reminders (durable wake-ups, indexed by partition and due time) ------------------

    @abc.abstractmethod
    async def reminder_set(self, fence: Fence, reminder: Reminder) -> None:
        """Create or replace ``reminder`` (by actor and name); ``FencedWrite`` if the fence
        no longer holds the actor's partition."""

    @abc.abstractmethod
    async def reminder_cancel(self, fence: Fence, actor: ActorKey, name: str) -> bool:
        """Remove a reminder; True if it existed. Fenced like every write."""

    @abc.abstractmethod
    async def reminders_of(self, actor: ActorKey) -> list[Reminder]:
        """The actor's reminders, by name."""

    @abc.abstractmethod
    async def reminders_due(
        self, partitions: Collection[int], until: float, limit: int = 1000
    ) -> list[Reminder]:
        """Reminders of these partitions due at or before ``until``, earliest first, at most
        ``limit``: what a silo polls for the partitions it owns. Must stay cheap with a
        million reminders registered (an index by partition and due time, never a scan)."""

    @abc.abstractmethod
    async def steps_pending(self, actor: ActorKey) -> dict[str, list[bytes]]:
        """Every uncommitted invocation of the actor with its persisted steps (as ``steps_read``).

        Read once at activation, so a retried invocation resumes from its steps without a
        storage read per call.
        """

    # -- activation ------------------------------------------------------------------------

    async def load_actor(self, actor: ActorKey) -> ActorLoad:
        """What an activation needs, read together: the snapshot, the journal after it,
        pending steps and the inbox.

        This default reads them one after another (four calls); a backend overrides it to
        read them in one round trip, and one consistent view, where it can. Only the
        actor's owner writes them, and not while it loads, so the default is consistent too.
        """
        snapshot = await self.read_snapshot(actor)
        journal = await self.read_journal(actor, 0 if snapshot is None else snapshot.seq)
        steps = await self.steps_pending(actor)
        inbox = await self.inbox_read(actor)
        return ActorLoad(snapshot, journal, steps, inbox)
