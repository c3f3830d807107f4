"""The storage contract as tests: every backend's test module subclasses ``StorageConformance``.

A subclass provides an async ``storage`` fixture yielding an opened, empty store.
"""

from __future__ import annotations

import os

import pytest

from bayou.errors import FencedWrite, StorageError
from bayou.storage import (
    ActorKey,
    Commit,
    Fence,
    InboxMessage,
    JournalRecord,
    Ownership,
    Snapshot,
    Storage,
)

A = ActorKey("counter", "a", 0)
B = ActorKey("counter", "b", 0)
C1 = ActorKey("other", "c", 1)


def rec(seq: int, data: bytes | None = None) -> JournalRecord:
    return JournalRecord(seq, f"record-{seq}".encode() if data is None else data)


async def take(storage: Storage, partition: int = 0, silo: str = "s1") -> Fence:
    epoch = await storage.claim(partition, silo)
    assert epoch is not None, f"{silo} could not claim partition {partition}"
    return Fence(partition, silo, epoch)


async def commit_one(storage: Storage, commit: Commit) -> None:
    [result] = await storage.commit([commit])
    assert result is None, result


async def seqs(storage: Storage, actor: ActorKey, after: int = 0) -> list[int]:
    return [r.seq for r in await storage.read_journal(actor, after)]


class StorageConformance:
    """Contract tests shared by all backends."""

    # -- ownership -------------------------------------------------------------------------

    async def test_owner_of_never_owned_partition(self, storage: Storage) -> None:
        assert await storage.owner(7) == Ownership(7, None, 0)

    async def test_claim_unowned_gives_epoch_one(self, storage: Storage) -> None:
        assert await storage.claim(3, "s1") == 1
        assert await storage.owner(3) == Ownership(3, "s1", 1)
        assert await storage.owner(4) == Ownership(4, None, 0)

    async def test_claim_own_partition_keeps_epoch(self, storage: Storage) -> None:
        assert await storage.claim(0, "s1") == 1
        assert await storage.claim(0, "s1") == 1
        assert await storage.claim(0, "s1", dead=["s1"]) == 1
        assert await storage.owner(0) == Ownership(0, "s1", 1)

    async def test_claim_from_live_silo_fails(self, storage: Storage) -> None:
        await storage.claim(0, "s1")
        assert await storage.claim(0, "s2") is None
        assert await storage.claim(0, "s2", dead=["s3"]) is None
        assert await storage.owner(0) == Ownership(0, "s1", 1)

    async def test_claim_from_dead_silo_bumps_epoch(self, storage: Storage) -> None:
        await storage.claim(0, "s1")
        assert await storage.claim(0, "s2", dead={"s1"}) == 2
        assert await storage.owner(0) == Ownership(0, "s2", 2)
        assert await storage.claim(0, "s1") is None

    async def test_claim_after_release_bumps_epoch(self, storage: Storage) -> None:
        fence = await take(storage)
        assert await storage.release(fence) is True
        assert await storage.owner(0) == Ownership(0, None, 1)
        assert await storage.claim(0, "s2") == 2
        assert await storage.release(Fence(0, "s2", 2)) is True
        assert await storage.claim(0, "s2") == 3

    async def test_release_with_stale_fence_is_refused(self, storage: Storage) -> None:
        old = await take(storage)
        assert await storage.claim(0, "s2", dead=["s1"]) == 2
        assert await storage.release(old) is False
        assert await storage.release(Fence(0, "s1", 2)) is False  # wrong silo
        assert await storage.release(Fence(1, "s2", 2)) is False  # wrong partition
        assert await storage.owner(0) == Ownership(0, "s2", 2)
        assert await storage.release(Fence(0, "s2", 2)) is True
        assert await storage.release(Fence(0, "s2", 2)) is False  # already released

    # -- journal ---------------------------------------------------------------------------

    async def test_commit_and_read_journal_in_order(self, storage: Storage) -> None:
        fence = await take(storage)
        assert await storage.commit([Commit(A, fence, rec(s)) for s in (2, 1, 3)]) == [None] * 3
        await commit_one(storage, Commit(A, fence, rec(4)))
        journal = await storage.read_journal(A)
        assert journal == [rec(1), rec(2), rec(3), rec(4)]
        assert await storage.read_journal(A, after_seq=2) == [rec(3), rec(4)]
        assert await storage.read_journal(A, after_seq=4) == []
        assert await storage.read_journal(B) == []

    async def test_commit_empty_batch(self, storage: Storage) -> None:
        assert await storage.commit([]) == []

    async def test_duplicate_seq_fails_alone(self, storage: Storage) -> None:
        fence = await take(storage)
        await commit_one(storage, Commit(A, fence, rec(1), kv_writes={"x": b"1"}))
        results = await storage.commit(
            [
                Commit(A, fence, rec(1, b"again"), kv_writes={"x": b"2"}),
                Commit(B, fence, rec(1)),
                Commit(A, fence, rec(2)),
                Commit(A, fence, rec(2, b"twice in one batch"), kv_writes={"x": b"3"}),
            ]
        )
        assert results[1] is None and results[2] is None
        for bad in (results[0], results[3]):
            assert isinstance(bad, StorageError) and not isinstance(bad, FencedWrite)
        assert await storage.read_journal(A) == [rec(1), rec(2)]
        assert await storage.read_journal(B) == [rec(1)]
        assert await storage.kv_get(A, ["x"]) == {"x": b"1"}

    async def test_seq_trimmed_by_snapshot_is_a_duplicate(self, storage: Storage) -> None:
        fence = await take(storage)
        await storage.commit([Commit(A, fence, rec(s)) for s in (1, 2, 3)])
        await storage.write_snapshot(A, fence, Snapshot(3, b"state"))
        [result] = await storage.commit([Commit(A, fence, rec(2))])
        assert isinstance(result, StorageError)
        assert await storage.read_journal(A) == []
        await commit_one(storage, Commit(A, fence, rec(4)))
        assert await seqs(storage, A) == [4]

    async def _pending_work(self, storage: Storage) -> Fence:
        """A with record 1, kv x=1, a waiting message m1 and a step of invocation inv."""
        fence = await take(storage)
        await commit_one(storage, Commit(A, fence, rec(1), kv_writes={"x": b"1"}))
        assert await storage.inbox_put(A, fence, InboxMessage("m1", b"hello"))
        await storage.step_put(A, fence, "inv", 0, b"step0")
        return fence

    async def _assert_untouched(self, storage: Storage) -> None:
        assert await seqs(storage, A) == [1]
        assert await storage.kv_get(A, ["x", "y"]) == {"x": b"1"}
        assert await storage.inbox_read(A) == [InboxMessage("m1", b"hello")]
        assert await storage.steps_read(A, "inv") == [b"step0"]

    def _doomed(self, fence: Fence) -> Commit:
        return Commit(
            A, fence, rec(2), kv_writes={"x": None, "y": b"2"}, inbox_ack="m1", clear_steps="inv"
        )

    async def test_commit_with_stale_epoch_is_fenced(self, storage: Storage) -> None:
        old = await self._pending_work(storage)
        new_epoch = await storage.claim(0, "s2", dead=["s1"])
        assert new_epoch == 2
        other = await take(storage, partition=1, silo="s1")
        results = await storage.commit([self._doomed(old), Commit(C1, other, rec(1))])
        assert isinstance(results[0], FencedWrite)
        assert results[1] is None
        await self._assert_untouched(storage)
        assert await seqs(storage, C1) == [1]

    async def test_commit_from_wrong_silo_is_fenced(self, storage: Storage) -> None:
        fence = await self._pending_work(storage)
        [result] = await storage.commit([self._doomed(Fence(0, "s2", fence.epoch))])
        assert isinstance(result, FencedWrite)
        await self._assert_untouched(storage)

    async def test_commit_to_released_partition_is_fenced(self, storage: Storage) -> None:
        fence = await self._pending_work(storage)
        assert await storage.release(fence)
        [result] = await storage.commit([self._doomed(fence)])
        assert isinstance(result, FencedWrite)
        await self._assert_untouched(storage)

    async def test_fence_of_another_partition_is_fenced(self, storage: Storage) -> None:
        await self._pending_work(storage)
        elsewhere = await take(storage, partition=5)
        [result] = await storage.commit([self._doomed(elsewhere)])
        assert isinstance(result, FencedWrite)
        await self._assert_untouched(storage)

    async def test_commit_applies_kv_ack_and_steps_together(self, storage: Storage) -> None:
        fence = await self._pending_work(storage)
        assert await storage.inbox_put(A, fence, InboxMessage("m2", b"second"))
        await storage.step_put(A, fence, "other", 0, b"kept")
        await commit_one(storage, self._doomed(fence))
        assert await seqs(storage, A) == [1, 2]
        assert await storage.kv_get(A, ["x", "y"]) == {"y": b"2"}
        assert await storage.inbox_read(A) == [InboxMessage("m2", b"second")]
        assert await storage.steps_read(A, "inv") == []
        assert await storage.steps_read(A, "other") == [b"kept"]

    # -- kv --------------------------------------------------------------------------------

    async def test_kv_writes_and_deletes(self, storage: Storage) -> None:
        fence = await take(storage)
        assert await storage.kv_get(A, ["x"]) == {}
        await commit_one(storage, Commit(A, fence, rec(1), kv_writes={"x": b"1", "y": b"2"}))
        await commit_one(storage, Commit(B, fence, rec(1), kv_writes={"x": b"other"}))
        assert await storage.kv_get(A, ["x", "y", "z"]) == {"x": b"1", "y": b"2"}
        await commit_one(storage, Commit(A, fence, rec(2), kv_writes={"x": None, "y": b"3"}))
        assert await storage.kv_get(A, ["x", "y"]) == {"y": b"3"}
        assert await storage.kv_get(B, ["x", "y"]) == {"x": b"other"}
        assert await storage.kv_get(A, []) == {}

    async def test_kv_get_many_keys(self, storage: Storage) -> None:
        fence = await take(storage)
        writes: dict[str, bytes | None] = {f"k{i}": str(i).encode() for i in range(1200)}
        await commit_one(storage, Commit(A, fence, rec(1), kv_writes=writes))
        wanted = [f"k{i}" for i in range(0, 1500, 2)]
        got = await storage.kv_get(A, wanted)
        assert got == {f"k{i}": str(i).encode() for i in range(0, 1200, 2)}

    # -- inbox -----------------------------------------------------------------------------

    async def test_inbox_order_and_dedup(self, storage: Storage) -> None:
        fence = await take(storage)
        assert await storage.inbox_read(A) == []
        for msg_id in ("z", "a", "m"):
            assert await storage.inbox_put(A, fence, InboxMessage(msg_id, msg_id.encode() * 2))
        assert await storage.inbox_put(A, fence, InboxMessage("a", b"different")) is False
        assert await storage.inbox_put(B, fence, InboxMessage("a", b"for b")) is True
        assert await storage.inbox_read(A) == [
            InboxMessage("z", b"zz"),
            InboxMessage("a", b"aa"),
            InboxMessage("m", b"mm"),
        ]
        assert await storage.inbox_read(B) == [InboxMessage("a", b"for b")]

    async def test_inbox_ack_by_commit(self, storage: Storage) -> None:
        fence = await take(storage)
        for msg_id in ("1", "2", "3"):
            await storage.inbox_put(A, fence, InboxMessage(msg_id, b""))
        await commit_one(storage, Commit(A, fence, rec(1), inbox_ack="2"))
        await commit_one(storage, Commit(A, fence, rec(2), inbox_ack="missing"))
        assert [m.id for m in await storage.inbox_read(A)] == ["1", "3"]
        assert await storage.inbox_put(A, fence, InboxMessage("4", b""))
        assert [m.id for m in await storage.inbox_read(A)] == ["1", "3", "4"]

    async def test_inbox_put_is_fenced(self, storage: Storage) -> None:
        old = await take(storage)
        await storage.claim(0, "s2", dead=["s1"])
        with pytest.raises(FencedWrite):
            await storage.inbox_put(A, old, InboxMessage("m", b"x"))
        assert await storage.inbox_read(A) == []
        assert await storage.inbox_actors([0]) == []

    async def test_inbox_actors_by_partition(self, storage: Storage) -> None:
        spread = [0, 1, 2, 511, 512, 1023]
        for p in spread:
            fence = await take(storage, partition=p)
            await storage.inbox_put(ActorKey("t", f"k{p}", p), fence, InboxMessage("m", b""))
            await storage.inbox_put(ActorKey("t", f"k{p}", p), fence, InboxMessage("n", b""))
        fence2 = await take(storage, partition=2)
        await storage.inbox_put(ActorKey("u", "x", 2), fence2, InboxMessage("m", b""))
        # An actor whose only message was acked is not waiting any more.
        await commit_one(
            storage, Commit(ActorKey("t", "k1", 1), Fence(1, "s1", 1), rec(1), inbox_ack="m")
        )
        await commit_one(
            storage, Commit(ActorKey("t", "k1", 1), Fence(1, "s1", 1), rec(2), inbox_ack="n")
        )
        found = await storage.inbox_actors({2, 512, 7})
        assert sorted(found, key=str) == [
            ActorKey("t", "k2", 2),
            ActorKey("t", "k512", 512),
            ActorKey("u", "x", 2),
        ]
        everything = await storage.inbox_actors(range(1024))
        assert {a.partition for a in everything} == set(spread) - {1}
        assert len(everything) == len(set(everything)) == 6
        assert await storage.inbox_actors([]) == []

    # -- steps -----------------------------------------------------------------------------

    async def test_steps_put_read_overwrite(self, storage: Storage) -> None:
        fence = await take(storage)
        assert await storage.steps_read(A, "inv") == []
        for i in (2, 0, 1):
            await storage.step_put(A, fence, "inv", i, f"s{i}".encode())
        assert await storage.steps_read(A, "inv") == [b"s0", b"s1", b"s2"]
        await storage.step_put(A, fence, "inv", 1, b"s1'")
        assert await storage.steps_read(A, "inv") == [b"s0", b"s1'", b"s2"]
        assert await storage.steps_read(A, "other") == []
        assert await storage.steps_read(B, "inv") == []

    async def test_steps_stop_at_gap(self, storage: Storage) -> None:
        fence = await take(storage)
        await storage.step_put(A, fence, "inv", 1, b"s1")
        assert await storage.steps_read(A, "inv") == []
        await storage.step_put(A, fence, "inv", 0, b"s0")
        await storage.step_put(A, fence, "inv", 3, b"s3")
        assert await storage.steps_read(A, "inv") == [b"s0", b"s1"]

    async def test_step_put_is_fenced(self, storage: Storage) -> None:
        fence = await take(storage)
        await storage.release(fence)
        with pytest.raises(FencedWrite):
            await storage.step_put(A, fence, "inv", 0, b"s0")
        assert await storage.steps_read(A, "inv") == []

    async def test_steps_pending_lists_uncommitted_invocations(self, storage: Storage) -> None:
        fence = await take(storage)
        assert await storage.steps_pending(A) == {}
        for inv, index in [("i1", 0), ("i1", 1), ("i2", 0), ("i2", 2), ("i3", 1)]:
            await storage.step_put(A, fence, inv, index, f"{inv}:{index}".encode())
        await storage.step_put(B, fence, "b1", 0, b"b")
        pending = await storage.steps_pending(A)
        assert pending == {"i1": [b"i1:0", b"i1:1"], "i2": [b"i2:0"]}
        for inv in ("i1", "i2", "i3"):
            assert pending.get(inv, []) == await storage.steps_read(A, inv)
        await commit_one(storage, Commit(A, fence, rec(1), clear_steps="i1"))
        assert await storage.steps_pending(A) == {"i2": [b"i2:0"]}
        assert await storage.steps_pending(B) == {"b1": [b"b"]}

    # -- snapshots -------------------------------------------------------------------------

    async def test_snapshot_trims_journal(self, storage: Storage) -> None:
        fence = await take(storage)
        assert await storage.read_snapshot(A) is None
        await storage.commit([Commit(A, fence, rec(s)) for s in range(1, 6)])
        await storage.commit([Commit(B, fence, rec(s)) for s in range(1, 3)])
        await storage.write_snapshot(A, fence, Snapshot(3, b"three"))
        assert await storage.read_snapshot(A) == Snapshot(3, b"three")
        assert await storage.read_journal(A) == [rec(4), rec(5)]
        assert await seqs(storage, B) == [1, 2]
        assert await storage.read_snapshot(B) is None

    async def test_older_snapshot_is_ignored(self, storage: Storage) -> None:
        fence = await take(storage)
        await storage.commit([Commit(A, fence, rec(s)) for s in range(1, 6)])
        await storage.write_snapshot(A, fence, Snapshot(4, b"four"))
        await storage.write_snapshot(A, fence, Snapshot(2, b"two"))
        assert await storage.read_snapshot(A) == Snapshot(4, b"four")
        assert await seqs(storage, A) == [5]
        await storage.write_snapshot(A, fence, Snapshot(5, b"five"))
        assert await storage.read_snapshot(A) == Snapshot(5, b"five")
        assert await seqs(storage, A) == []

    async def test_snapshot_is_fenced(self, storage: Storage) -> None:
        old = await take(storage)
        await storage.commit([Commit(A, old, rec(s)) for s in (1, 2)])
        await storage.claim(0, "s2", dead=["s1"])
        with pytest.raises(FencedWrite):
            await storage.write_snapshot(A, old, Snapshot(2, b"stale"))
        assert await storage.read_snapshot(A) is None
        assert await seqs(storage, A) == [1, 2]

    # -- payloads --------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "payload",
        [b"", bytes(range(256)), os.urandom(1 << 20)],
        ids=["empty", "all-bytes", "1MB"],
    )
    async def test_bytes_round_trip(self, storage: Storage, payload: bytes) -> None:
        actor = ActorKey("tÿpe/é", "kéy with spaces/ünicode", 0)
        fence = await take(storage)
        await commit_one(storage, Commit(actor, fence, rec(1, payload), kv_writes={"v": payload}))
        await storage.inbox_put(actor, fence, InboxMessage("m", payload))
        await storage.step_put(actor, fence, "inv", 0, payload)
        [record] = await storage.read_journal(actor)
        assert type(record.data) is bytes and record.data == payload
        assert await storage.kv_get(actor, ["v"]) == {"v": payload}
        assert await storage.inbox_read(actor) == [InboxMessage("m", payload)]
        assert await storage.steps_read(actor, "inv") == [payload]
        await storage.write_snapshot(actor, fence, Snapshot(1, payload))
        snapshot = await storage.read_snapshot(actor)
        assert snapshot == Snapshot(1, payload) and type(snapshot.data) is bytes

    # -- lifecycle -------------------------------------------------------------------------

    async def test_closed_store_refuses_calls(self, storage: Storage) -> None:
        await storage.close()
        with pytest.raises(StorageError):
            await storage.owner(0)
        with pytest.raises(StorageError):
            await storage.commit([Commit(A, Fence(0, "s1", 1), rec(1))])
