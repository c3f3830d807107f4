"""An in-process store for unit tests: plain dicts, same semantics as the durable backends.

Nothing here survives the process. Every method runs to completion without yielding to
the event loop, so each operation is atomic with respect to other tasks, exactly as a
backend transaction would be.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from bayou.errors import FencedWrite, StorageError
from bayou.storage.contract import (
    ActorKey,
    Commit,
    Fence,
    InboxMessage,
    JournalRecord,
    Ownership,
    Snapshot,
    Storage,
)


@dataclass(slots=True)
class _ActorRecords:
    """Everything stored for one actor. ``inbox`` relies on dict insertion order."""

    partition: int
    journal: dict[int, bytes] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    kv: dict[str, bytes] = field(default_factory=dict)
    inbox: dict[str, bytes] = field(default_factory=dict)
    steps: dict[str, dict[int, bytes]] = field(default_factory=dict)


class MemoryStorage(Storage):
    """A ``Storage`` held in dicts; usable right after construction, no ``open()`` needed.

    ``close()`` makes it refuse every call with ``StorageError``; calling ``open()`` again
    brings it back with its data intact, which lets tests simulate a silo restart.
    """

    def __init__(self) -> None:
        self._owners: dict[int, Ownership] = {}
        self._actors: dict[tuple[str, str], _ActorRecords] = {}
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
        self._check_open()
        wanted = set(partitions)
        found = [
            ActorKey(type_name, key, records.partition)
            for (type_name, key), records in self._actors.items()
            if records.inbox and records.partition in wanted
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


def _contiguous(steps: dict[int, bytes]) -> list[bytes]:
    """Steps by index from 0, stopping at the first missing index."""
    result: list[bytes] = []
    while len(result) in steps:
        result.append(steps[len(result)])
    return result
