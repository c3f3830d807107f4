"""An in-process store for unit tests: plain dicts, same semantics as the durable backends.

Nothing here survives the process. Every method runs to completion without yielding to
the event loop, so each operation is atomic with respect to other tasks, exactly as a
backend transaction would be.

Reminders, the same in every backend (``check_reminder``, ``commit_reminder_error`` and
``check_until`` below are shared by all three, ``EarliestDue`` by sqlite and redis):

- A reminder is identified by its actor *including the partition* and its name, as every
  Redis key is; the runtime derives the partition from ``(type, key)``, so this only
  matters to a caller that mixes partitions for one actor.
- ``due`` must be finite and ``period`` None or finite and above zero; ``reminder_set``
  raises ValueError otherwise, before touching the store. In a commit, such a reminder, or
  one whose actor is not the commit's actor or whose name is not its key in
  ``Commit.reminders``, makes that commit's result a ``StorageError`` and nothing of the
  commit is applied (checked before the fence).
- ``reminders_due`` orders by ``(due, partition, type, key, name)``, so reminders due at
  the same instant come in the same order everywhere and ``limit`` cuts at the same place.
  ``until`` may not be NaN (ValueError); a ``limit`` of 0 or less returns nothing.
- Cancelling a reminder that does not exist is no error (``reminder_cancel`` says False).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bayou.errors import FencedWrite, StorageError
from bayou.storage.contract import (
    ActorKey,
    Commit,
    Fence,
    InboxMessage,
    JournalRecord,
    Ownership,
    Reminder,
    Snapshot,
    Storage,
)

# One entry of a partition's due index: (due, type, key, name), sorted.
_DueEntry = tuple[float, str, str, str]


def check_reminder(reminder: Reminder) -> None:
    """Raise ValueError unless ``due`` is finite and ``period`` None or finite and > 0."""
    if not math.isfinite(reminder.due):
        raise ValueError(f"reminder {reminder.name!r} of {reminder.actor}: due {reminder.due}")
    period = reminder.period
    if period is not None and not (math.isfinite(period) and period > 0):
        raise ValueError(f"reminder {reminder.name!r} of {reminder.actor}: period {period}")


def commit_reminder_error(commit: Commit) -> StorageError | None:
    """Why ``commit.reminders`` cannot be applied, or None: each reminder must be valid,
    belong to the commit's actor and be filed under its own name."""
    for name, reminder in commit.reminders.items():
        if reminder is None:
            continue
        if reminder.actor != commit.actor or reminder.name != name:
            return StorageError(
                f"{commit.actor}: reminder {name!r} of the commit is "
                f"{reminder.name!r} of {reminder.actor}"
            )
        try:
            check_reminder(reminder)
        except ValueError as exc:
            return StorageError(f"{commit.actor}: invalid {exc}")
    return None


def check_until(until: float) -> None:
    if math.isnan(until):
        raise ValueError("reminders_due: until is NaN")


# How an index orders entries of one partition that are due at the same time: a backend's
# own encoding of (type, key, name) that sorts in that order.
Tie = TypeVar("Tie", bound=Hashable)


class EarliestDue(Generic[Tie]):
    """The ``limit`` earliest due index entries over several partitions, read by the
    durable backends in rounds of per-partition index ranges (``offset``, ``count``).

    The first round asks every partition for about twice its share of ``limit``. A
    partition that filled its range may hold more, all after the last entry it sent, so it
    is asked again only while that entry is earlier than the ``limit``-th earliest entry
    known (nothing after that can make the cut), for twice as many as before but no more
    than the known entries after its last one that it could still displace. The entries
    read stay near ``limit`` plus a few per partition, however many are due, in a handful
    of rounds. Entries compare as ``(due, partition, tie)``.
    """

    def __init__(self, partitions: Sequence[int], limit: int) -> None:
        first = min(limit, max(2, 2 * math.ceil(limit / max(len(partitions), 1))))
        self._limit = limit
        self._count = dict.fromkeys(partitions, first)
        self._offset = dict.fromkeys(partitions, 0)
        self._ask = list(partitions) if limit > 0 else []
        self._last: dict[int, tuple[float, int, Tie]] = {}  # partitions that may hold more
        self._known: list[tuple[float, int, Tie]] = []
        self._seen: set[tuple[int, Tie]] = set()

    def ranges(self) -> list[tuple[int, int, int]]:
        """``(partition, offset, count)`` of the ranges to read next; none once done."""
        return [(p, self._offset[p], self._count[p]) for p in self._ask]

    def add(self, replies: Sequence[Sequence[tuple[float, Tie]]]) -> None:
        """The ``(due, tie)`` entries of each range of ``ranges()``, in index order."""
        for p, rows in zip(self._ask, replies, strict=True):
            self._offset[p] += len(rows)
            for due, tie in rows:
                # An index that changed between rounds (Redis) can shift a range back.
                if (p, tie) not in self._seen:
                    self._seen.add((p, tie))
                    self._known.append((due, p, tie))
            if len(rows) < self._count[p]:
                self._last.pop(p, None)
            else:
                self._last[p] = (rows[-1][0], p, rows[-1][1])
        self._known.sort()
        del self._known[self._limit :]
        full = len(self._known) == self._limit
        cutoff = self._known[-1] if full else None
        self._ask = [p for p, last in self._last.items() if cutoff is None or last < cutoff]
        for p in self._ask:
            # What p sends next comes after its last entry, so it can only displace the
            # known entries ranked after that one.
            room = self._limit - bisect.bisect_right(self._known, self._last[p])
            self._count[p] = max(1, min(room, 2 * self._count[p]))

    @property
    def earliest(self) -> list[tuple[float, int, Tie]]:
        """The answer, once ``ranges()`` is empty: ``(due, partition, tie)``, earliest first."""
        return list(self._known)


@dataclass(slots=True)
class _ActorRecords:
    """Everything stored for one actor. ``inbox`` relies on dict insertion order."""

    partition: int
    journal: dict[int, bytes] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    kv: dict[str, bytes] = field(default_factory=dict)
    inbox: dict[str, bytes] = field(default_factory=dict)
    steps: dict[str, dict[int, bytes]] = field(default_factory=dict)
    sends_seq: int = 0  # the last record with tells, while no snapshot covers it; else 0


class MemoryStorage(Storage):
    """A ``Storage`` held in dicts; usable right after construction, no ``open()`` needed.

    ``close()`` makes it refuse every call with ``StorageError``; calling ``open()`` again
    brings it back with its data intact, which lets tests simulate a silo restart.
    """

    def __init__(self) -> None:
        self._owners: dict[int, Ownership] = {}
        self._actors: dict[tuple[str, str], _ActorRecords] = {}
        # Reminders by actor (with its partition) and name, and each partition's due index.
        self._reminders: dict[ActorKey, dict[str, Reminder]] = {}
        self._due: dict[int, list[_DueEntry]] = {}
        self._closed = False

    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    # -- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("memory storage is closed")

    def _owner(self, partition: int) -> Ownership:
        return self._owners.get(partition) or Ownership(partition, None, 0)

    def _fence_error(self, actor: ActorKey | None, fence: Fence) -> FencedWrite | None:
        """The FencedWrite to report for ``fence``, or None if it still holds."""
        if actor is not None and actor.partition != fence.partition:
            # A fence only proves ownership of its own partition.
            return FencedWrite(
                f"fence for partition {fence.partition} cannot write {actor} "
                f"of partition {actor.partition}"
            )
        held = self._owner(fence.partition)
        if held.silo == fence.silo and held.epoch == fence.epoch and held.silo is not None:
            return None
        return FencedWrite(
            f"partition {fence.partition} is held by {held.silo}@{held.epoch}, "
            f"not {fence.silo}@{fence.epoch}",
            {"partition": fence.partition, "silo": held.silo, "epoch": held.epoch},
        )

    def _check_fence(self, actor: ActorKey, fence: Fence) -> None:
        error = self._fence_error(actor, fence)
        if error is not None:
            raise error

    def _records(self, actor: ActorKey) -> _ActorRecords:
        found = self._actors.get((actor.type, actor.key))
        if found is None:
            found = self._actors[(actor.type, actor.key)] = _ActorRecords(actor.partition)
        return found

    def _peek(self, actor: ActorKey) -> _ActorRecords | None:
        return self._actors.get((actor.type, actor.key))

    # -- ownership -------------------------------------------------------------------------

    async def claim(self, partition: int, silo: str, dead: Collection[str] = ()) -> int | None:
        self._check_open()
        held = self._owner(partition)
        if held.silo == silo:
            return held.epoch
        if held.silo is not None and held.silo not in dead:
            return None
        epoch = held.epoch + 1
        self._owners[partition] = Ownership(partition, silo, epoch)
        return epoch

    async def release(self, fence: Fence) -> bool:
        self._check_open()
        if self._fence_error(None, fence) is not None:
            return False
        self._owners[fence.partition] = Ownership(fence.partition, None, fence.epoch)
        return True

    async def owner(self, partition: int) -> Ownership:
        self._check_open()
        return self._owner(partition)

    # -- journal ---------------------------------------------------------------------------

    async def commit(self, batch: Sequence[Commit]) -> list[BaseException | None]:
        self._check_open()
        return [self._apply(commit) for commit in batch]

    def _apply(self, commit: Commit) -> BaseException | None:
        """Validate the whole commit first, then apply all of it: nothing partial is kept."""
        malformed = commit_reminder_error(commit)
        if malformed is not None:
            return malformed
        fenced = self._fence_error(commit.actor, commit.fence)
        if fenced is not None:
            return fenced
        existing = self._peek(commit.actor)
        seq = commit.record.seq
        if existing is not None and (
            seq in existing.journal
            or (existing.snapshot is not None and seq <= existing.snapshot.seq)
        ):
            # A seq at or below the snapshot existed once and was trimmed: still a duplicate.
            return StorageError(f"{commit.actor}: journal record {seq} already exists")
        records = self._records(commit.actor)
        records.journal[seq] = bytes(commit.record.data)
        for k, v in commit.kv_writes.items():
            if v is None:
                records.kv.pop(k, None)
            else:
                records.kv[k] = bytes(v)
        if commit.inbox_ack is not None:
            records.inbox.pop(commit.inbox_ack, None)
        if commit.clear_steps is not None:
            records.steps.pop(commit.clear_steps, None)
        if commit.sends:
            records.sends_seq = max(records.sends_seq, seq)
        for name, reminder in commit.reminders.items():
            if reminder is None:
                self._drop_reminder(commit.actor, name)
            else:
                self._put_reminder(reminder)
        return None

    async def read_journal(self, actor: ActorKey, after_seq: int = 0) -> list[JournalRecord]:
        self._check_open()
        records = self._peek(actor)
        if records is None:
            return []
        return [
            JournalRecord(seq, data)
            for seq, data in sorted(records.journal.items())
            if seq > after_seq
        ]

    # -- snapshots -------------------------------------------------------------------------

    async def write_snapshot(self, actor: ActorKey, fence: Fence, snapshot: Snapshot) -> None:
        self._check_open()
        self._check_fence(actor, fence)
        records = self._records(actor)
        if records.snapshot is not None and records.snapshot.seq > snapshot.seq:
            return
        records.snapshot = Snapshot(snapshot.seq, bytes(snapshot.data))
        for seq in [s for s in records.journal if s <= snapshot.seq]:
            del records.journal[seq]
        if records.sends_seq <= snapshot.seq:
            records.sends_seq = 0

    async def read_snapshot(self, actor: ActorKey) -> Snapshot | None:
        self._check_open()
        records = self._peek(actor)
        return None if records is None else records.snapshot

    # -- kv --------------------------------------------------------------------------------

    async def kv_get(self, actor: ActorKey, keys: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        records = self._peek(actor)
        if records is None:
            return {}
        return {k: records.kv[k] for k in keys if k in records.kv}

    # -- inbox -----------------------------------------------------------------------------

    async def inbox_put(self, actor: ActorKey, fence: Fence, message: InboxMessage) -> bool:
        self._check_open()
        self._check_fence(actor, fence)
        records = self._records(actor)
        if message.id in records.inbox:
            return False
        records.inbox[message.id] = bytes(message.data)
        return True

    async def inbox_read(self, actor: ActorKey) -> list[InboxMessage]:
        self._check_open()
        records = self._peek(actor)
        if records is None:
            return []
        return [InboxMessage(msg_id, data) for msg_id, data in records.inbox.items()]

    async def inbox_actors(self, partitions: Collection[int]) -> list[ActorKey]:
        return self._listed(partitions, lambda records: bool(records.inbox))

    async def outbox_actors(self, partitions: Collection[int]) -> list[ActorKey]:
        return self._listed(partitions, lambda records: records.sends_seq > 0)

    def _listed(
        self, partitions: Collection[int], listed: Callable[[_ActorRecords], bool]
    ) -> list[ActorKey]:
        """Actors of ``partitions`` whose records are ``listed``, by (partition, type, key)."""
        self._check_open()
        wanted = set(partitions)
        found = [
            ActorKey(type_name, key, records.partition)
            for (type_name, key), records in self._actors.items()
            if records.partition in wanted and listed(records)
        ]
        return sorted(found, key=lambda a: (a.partition, a.type, a.key))

    # -- steps -----------------------------------------------------------------------------

    async def step_put(
        self, actor: ActorKey, fence: Fence, invocation: str, index: int, data: bytes
    ) -> None:
        self._check_open()
        self._check_fence(actor, fence)
        self._records(actor).steps.setdefault(invocation, {})[index] = bytes(data)

    async def steps_read(self, actor: ActorKey, invocation: str) -> list[bytes]:
        self._check_open()
        records = self._peek(actor)
        return _contiguous({} if records is None else records.steps.get(invocation, {}))

    async def steps_pending(self, actor: ActorKey) -> dict[str, list[bytes]]:
        self._check_open()
        records = self._peek(actor)
        if records is None:
            return {}
        pending = {inv: _contiguous(steps) for inv, steps in records.steps.items()}
        # An invocation without step 0 has nothing to resume from, as steps_read says.
        return {inv: steps for inv, steps in pending.items() if steps}

    # -- reminders -------------------------------------------------------------------------

    def _put_reminder(self, reminder: Reminder) -> None:
        """Create or replace, moving the due index entry along."""
        actor = reminder.actor
        self._drop_reminder(actor, reminder.name)
        stored = Reminder(
            actor,
            reminder.name,
            float(reminder.due),
            None if reminder.period is None else float(reminder.period),
            bytes(reminder.data),
        )
        self._reminders.setdefault(actor, {})[reminder.name] = stored
        entry = (stored.due, actor.type, actor.key, stored.name)
        bisect.insort(self._due.setdefault(actor.partition, []), entry)

    def _drop_reminder(self, actor: ActorKey, name: str) -> bool:
        named = self._reminders.get(actor)
        old = None if named is None else named.pop(name, None)
        if named is None or old is None:
            return False
        if not named:
            del self._reminders[actor]
        index = self._due[actor.partition]
        entry = (old.due, actor.type, actor.key, name)
        del index[bisect.bisect_left(index, entry)]
        if not index:
            del self._due[actor.partition]
        return True

    async def reminder_set(self, fence: Fence, reminder: Reminder) -> None:
        self._check_open()
        check_reminder(reminder)
        self._check_fence(reminder.actor, fence)
        self._put_reminder(reminder)

    async def reminder_cancel(self, fence: Fence, actor: ActorKey, name: str) -> bool:
        self._check_open()
        self._check_fence(actor, fence)
        return self._drop_reminder(actor, name)

    async def reminders_of(self, actor: ActorKey) -> list[Reminder]:
        self._check_open()
        named = self._reminders.get(actor, {})
        return [named[name] for name in sorted(named)]

    async def reminders_due(
        self, partitions: Collection[int], until: float, limit: int = 1000
    ) -> list[Reminder]:
        """A lazy merge of each partition's index up to ``until``: touches ``limit`` entries
        plus one per partition, however many reminders are due."""
        self._check_open()
        check_until(until)
        if limit <= 0:
            return []

        def due_in(partition: int) -> Iterator[tuple[float, int, str, str, str]]:
            index = self._due.get(partition, [])
            stop = bisect.bisect_right(index, until, key=lambda entry: entry[0])
            for due, type_name, key, name in itertools.islice(index, stop):
                yield due, partition, type_name, key, name

        merged = heapq.merge(*(due_in(p) for p in sorted(set(partitions))))
        return [
            self._reminders[ActorKey(type_name, key, partition)][name]
            for _, partition, type_name, key, name in itertools.islice(merged, limit)
        ]


def _contiguous(steps: dict[int, bytes]) -> list[bytes]:
    """Steps by index from 0, stopping at the first missing index."""
    result: list[bytes] = []
    while len(result) in steps:
        result.append(steps[len(result)])
    return result
