"""GroupCommitter: batching, per-commit outcomes, whole-batch failures, close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bayou.errors import FencedWrite, StorageError
from bayou.storage import (
    ActorKey,
    Commit,
    Fence,
    GroupCommitter,
    InboxMessage,
    InboxPut,
    MemoryStorage,
    Snapshot,
    SnapshotPut,
)
from tests.unit.storage_conformance import rec, take


class RecordingStorage(MemoryStorage):
    """A memory store that records each batch and can be held or made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.put_batches: list[int] = []
        self.snapshot_batches: list[int] = []
        self.gate: asyncio.Event | None = None
        self.fail_with: BaseException | None = None
        self.short_results = False

    async def inbox_put_many(self, batch: Sequence[InboxPut]) -> list[bool | BaseException]:
        self.put_batches.append(len(batch))
        if self.fail_with is not None:
            raise self.fail_with
        return await super().inbox_put_many(batch)

    async def write_snapshots(self, batch: Sequence[SnapshotPut]) -> list[BaseException | None]:
        self.snapshot_batches.append(len(batch))
        if self.fail_with is not None:
            raise self.fail_with
        return await super().write_snapshots(batch)

    async def commit(self, batch: Sequence[Commit]) -> list[BaseException | None]:
        self.batches.append(len(batch))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        results = await super().commit(batch)
        return results[:-1] if self.short_results else results


def commit_for(fence: Fence, key: str, seq: int = 1) -> Commit:
    return Commit(ActorKey("t", key, fence.partition), fence, rec(seq), kv_writes={"k": b"v"})


async def test_concurrent_submits_share_batches() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    committer = GroupCommitter(storage)
    await asyncio.gather(*(committer.submit(commit_for(fence, f"k{i}")) for i in range(200)))
    assert sum(storage.batches) == 200
    assert len(storage.batches) <= 3, storage.batches
    assert committer.batches_flushed == len(storage.batches)
    assert committer.commits_flushed == 200
    for i in range(200):
        assert await storage.read_journal(ActorKey("t", f"k{i}", 0)) == [rec(1)]


async def test_batches_are_capped() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    committer = GroupCommitter(storage, max_batch=64)
    await asyncio.gather(*(committer.submit(commit_for(fence, f"k{i}")) for i in range(200)))
    assert storage.batches == [64, 64, 64, 8]


async def test_submissions_during_a_flush_wait_for_the_next_batch() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    storage.gate = asyncio.Event()
    committer = GroupCommitter(storage)
    first = asyncio.create_task(committer.submit(commit_for(fence, "first")))
    await asyncio.sleep(0.01)
    assert storage.batches == [1]
    later = [asyncio.create_task(committer.submit(commit_for(fence, f"k{i}"))) for i in range(10)]
    await asyncio.sleep(0.01)
    assert storage.batches == [1], "a second flush started while one was in flight"
    assert committer.pending == 10
    storage.gate.set()
    await asyncio.gather(first, *later)
    assert storage.batches == [1, 10]


async def test_failures_reach_only_their_submitter() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    await storage.commit([commit_for(fence, "dup")])
    stale = Fence(0, "s1", fence.epoch - 1)
    committer = GroupCommitter(storage)
    outcomes = await asyncio.gather(
        committer.submit(commit_for(fence, "ok1")),
        committer.submit(commit_for(stale, "fenced")),
        committer.submit(commit_for(fence, "dup")),
        committer.submit(commit_for(fence, "ok2")),
        return_exceptions=True,
    )
    assert storage.batches == [1, 4]
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], FencedWrite)
    assert isinstance(outcomes[2], StorageError) and not isinstance(outcomes[2], FencedWrite)
    assert await storage.read_journal(ActorKey("t", "fenced", 0)) == []
    assert await storage.read_journal(ActorKey("t", "ok2", 0)) == [rec(1)]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), StorageError("gone")])
async def test_storage_failure_reaches_every_submitter(error: Exception) -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    committer = GroupCommitter(storage)
    storage.fail_with = error
    outcomes = await asyncio.gather(
        *(committer.submit(commit_for(fence, f"k{i}")) for i in range(5)),
        return_exceptions=True,
    )
    assert storage.batches == [5]
    for outcome in outcomes:
        assert isinstance(outcome, StorageError)
        assert outcome is error or outcome.__cause__ is error
    storage.fail_with = None  # the committer is not wedged by a failed batch
    await committer.submit(commit_for(fence, "k0"))
    assert storage.batches == [5, 1]


async def test_wrong_number_of_results_fails_the_batch() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    storage.short_results = True
    committer = GroupCommitter(storage)
    outcomes = await asyncio.gather(
        committer.submit(commit_for(fence, "a")),
        committer.submit(commit_for(fence, "b")),
        return_exceptions=True,
    )
    assert all(isinstance(o, StorageError) for o in outcomes), outcomes


async def test_cancelled_submitter_does_not_disturb_others() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    storage.gate = asyncio.Event()
    committer = GroupCommitter(storage)
    doomed = asyncio.create_task(committer.submit(commit_for(fence, "doomed")))
    kept = asyncio.create_task(committer.submit(commit_for(fence, "kept")))
    await asyncio.sleep(0.01)
    doomed.cancel()
    storage.gate.set()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await doomed
    # Once handed to the store, a cancelled submitter's commit may still land.
    assert await storage.read_journal(ActorKey("t", "doomed", 0)) == [rec(1)]


async def test_close_waits_for_pending_flushes() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    storage.gate = asyncio.Event()
    committer = GroupCommitter(storage, max_batch=3)
    tasks = [asyncio.create_task(committer.submit(commit_for(fence, f"k{i}"))) for i in range(7)]
    await asyncio.sleep(0)
    closing = asyncio.create_task(committer.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    storage.gate.set()
    await closing
    assert all(t.done() and t.exception() is None for t in tasks)
    assert storage.batches == [3, 3, 1]
    with pytest.raises(StorageError, match="closed"):
        await committer.submit(commit_for(fence, "late"))


async def test_inbox_puts_share_batches_with_commits() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    stale = await take(storage, partition=1)
    await storage.claim(1, "s2", dead=["s1"])
    committer = GroupCommitter(storage)

    def put(key: str, fence: Fence = fence) -> InboxPut:
        return InboxPut(ActorKey("t", key, fence.partition), fence, InboxMessage("m", b"x"))

    outcomes = await asyncio.gather(
        *(committer.submit_inbox(put(f"k{i}")) for i in range(100)),
        *(committer.submit(commit_for(fence, f"c{i}")) for i in range(50)),
        committer.submit_inbox(put("k0")),  # the same message again: not stored twice
        committer.submit_inbox(put("s", stale)),
        return_exceptions=True,
    )
    assert outcomes[:100] == [True] * 100
    assert outcomes[100:150] == [None] * 50
    assert outcomes[150] is False
    assert isinstance(outcomes[151], FencedWrite)
    assert len(storage.put_batches) <= 3 and sum(storage.put_batches) == 102
    assert committer.inbox_flushed == 102 and committer.commits_flushed == 50
    assert committer.fenced == 1
    assert await storage.inbox_read(ActorKey("t", "k7", 0)) == [InboxMessage("m", b"x")]


async def test_inbox_put_failure_reaches_every_putter() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    committer = GroupCommitter(storage)
    storage.fail_with = RuntimeError("disk on fire")
    outcomes = await asyncio.gather(
        *(
            committer.submit_inbox(
                InboxPut(ActorKey("t", f"k{i}", 0), fence, InboxMessage("m", b"x"))
            )
            for i in range(5)
        ),
        return_exceptions=True,
    )
    assert all(type(o) is StorageError for o in outcomes)


async def test_snapshots_share_batches_with_commits() -> None:
    storage = RecordingStorage()
    fence = await take(storage)
    stale = await take(storage, partition=1)
    await storage.claim(1, "s2", dead=["s1"])
    committer = GroupCommitter(storage)
    actors = [ActorKey("t", f"a{i}", 0) for i in range(40)]
    await storage.commit([Commit(a, fence, rec(1)) for a in actors])

    def snap(actor: ActorKey, fence: Fence = fence) -> SnapshotPut:
        return SnapshotPut(actor, fence, Snapshot(1, actor.key.encode()))

    outcomes = await asyncio.gather(
        *(committer.submit_snapshot(snap(a)) for a in actors),
        *(committer.submit(commit_for(fence, f"c{i}")) for i in range(10)),
        committer.submit_snapshot(snap(ActorKey("t", "gone", 1), stale)),
        return_exceptions=True,
    )
    assert outcomes[:50] == [None] * 50
    assert isinstance(outcomes[50], FencedWrite)
    assert storage.snapshot_batches == [41]  # one storage call for the loop turn's snapshots
    assert committer.snapshots_flushed == 41 and committer.fenced == 1
    assert await storage.read_snapshot(actors[7]) == Snapshot(1, b"a7")
    assert await storage.read_journal(actors[7]) == []

    storage.fail_with = RuntimeError("disk on fire")
    with pytest.raises(StorageError, match="snapshot write failed"):
        await committer.submit_snapshot(snap(actors[0]))


async def test_a_fault_of_the_committer_fails_its_batch_instead_of_hanging_it() -> None:
    class Broken(MemoryStorage):
        async def commit(self, batch: Sequence[Commit]) -> list[BaseException | None]:
            return None  # type: ignore[return-value]  # not even a list: a bug, not a verdict

    storage = Broken()
    fence = await take(storage)
    committer = GroupCommitter(storage)
    with pytest.raises(StorageError, match="outcome unknown"):
        await asyncio.wait_for(committer.submit(commit_for(fence, "a")), 5)
    await committer.close()


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommitter(MemoryStorage(), max_batch=0)


class _NarrowStore(MemoryStorage):
    commit_batch = 7


@pytest.mark.parametrize(
    ("storage", "setting", "bound"),
    [(MemoryStorage(), None, 512), (_NarrowStore(), None, 7), (_NarrowStore(), 3, 3)],
)
def test_a_silo_bounds_its_batches_as_its_store_asks_unless_told(
    storage: MemoryStorage, setting: int | None, bound: int
) -> None:
    from bayou import App, SiloSettings
    from bayou.runtime.silo import Silo
    from bayou.storage.redis import RedisStorage
    from tests.unit.actors import Recorder

    assert RedisStorage.commit_batch < MemoryStorage.commit_batch  # Redis works beside us
    silo = Silo(App([Recorder], SiloSettings(commit_batch=setting)), storage, port=0)
    assert silo.committer.max_batch == bound
