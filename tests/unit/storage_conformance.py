"""The storage contract as tests: every backend's test module subclasses ``StorageConformance``.

A subclass provides an async ``storage`` fixture yielding an opened, empty store.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Collection

import pytest

from bayou.errors import FencedWrite, StorageError
from bayou.storage import (
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


def rem(
    actor: ActorKey = A,
    name: str = "r",
    due: float = 100.0,
    period: float | None = None,
    data: bytes = b"",
) -> Reminder:
    return Reminder(actor, name, due, period, data)


def due_order(reminder: Reminder) -> tuple[float, int, str, str, str]:
    """How ``reminders_due`` orders: by due time, ties by partition, type, key and name."""
    actor = reminder.actor
    return (reminder.due, actor.partition, actor.type, actor.key, reminder.name)


def expected_due(
    reminders: Collection[Reminder], partitions: Collection[int], until: float, limit: int
) -> list[Reminder]:
    wanted = set(partitions)
    chosen = [r for r in reminders if r.actor.partition in wanted and r.due <= until]
    return sorted(chosen, key=due_order)[:limit]


async def fill_reminders(
    storage: Storage, count: int, partitions: int = 1024, per_actor: int = 10, batch: int = 1000
) -> list[Reminder]:
    """Register ``count`` reminders, ``per_actor`` to an actor, over ``partitions``
    partitions, by commits of ``batch`` actors each. Due times are milliseconds apart over
    a day (so some tie); every other reminder is periodic."""
    rng = random.Random(count)
    fences = [await take(storage, partition=p) for p in range(partitions)]
    everything: list[Reminder] = []
    commits: list[Commit] = []
    for n in range(count // per_actor):
        actor = ActorKey("scale", f"k{n}", rng.randrange(partitions))
        reminders: dict[str, Reminder | None] = {}
        for j in range(per_actor):
            due = 1_700_000_000 + rng.randrange(86_400_000) / 1000
            reminder = rem(actor, f"r{j}", due, None if j % 2 else 60.0, b"%d" % n)
            reminders[reminder.name] = reminder
            everything.append(reminder)
        commits.append(Commit(actor, fences[actor.partition], rec(1), reminders=reminders))
        if len(commits) == batch or n == count // per_actor - 1:
            assert await storage.commit(commits) == [None] * len(commits)
            commits = []
    return everything


async def check_reminders_due_at_scale(storage: Storage, everything: list[Reminder]) -> None:
    """``reminders_due`` against a plain sort of ``everything``; prints each call's time."""
    ordered = sorted(everything, key=due_order)
    partitions = range(1024)
    cases: list[tuple[str, Collection[int], float, int]] = [
        ("all due, limit 1000", partitions, math.inf, 1000),
        ("10 due", partitions, ordered[9].due, 1000),
        ("5000 due, limit 1000", partitions, ordered[4999].due, 1000),
        ("none due", partitions, ordered[0].due - 1, 1000),
        ("every 3rd partition", range(0, 1024, 3), math.inf, 1000),
        ("one partition", [ordered[0].actor.partition], math.inf, 1000),
        ("all due, limit 10", partitions, math.inf, 10),
    ]
    for label, wanted, until, limit in cases:
        started = time.perf_counter()
        got = await storage.reminders_due(wanted, until, limit)
        elapsed = time.perf_counter() - started
        print(f"{type(storage).__name__} reminders_due ({label}): {elapsed * 1000:.1f} ms")
        assert got == expected_due(everything, wanted, until, limit), label

    # Moving the earliest reminder to the end moves its index entry too.
    first = ordered[0]
    moved = rem(first.actor, first.name, ordered[-1].due + 1, first.period, first.data)
    fence = Fence(first.actor.partition, "s1", 1)
    await storage.reminder_set(fence, moved)
    assert await storage.reminders_due(partitions, math.inf, 5) == ordered[1:6]
    assert moved in await storage.reminders_of(first.actor)


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
        """A with record 1, kv x=1, a waiting message m1, a step of invocation inv and the
        reminders r1 (due 10) and r2 (due 20)."""
        fence = await take(storage)
        await commit_one(storage, Commit(A, fence, rec(1), kv_writes={"x": b"1"}))
        assert await storage.inbox_put(A, fence, InboxMessage("m1", b"hello"))
        await storage.step_put(A, fence, "inv", 0, b"step0")
        await storage.reminder_set(fence, rem(A, "r1", 10.0, data=b"one"))
        await storage.reminder_set(fence, rem(A, "r2", 20.0, period=5.0))
        return fence

    async def _assert_untouched(self, storage: Storage) -> None:
        assert await seqs(storage, A) == [1]
        assert await storage.kv_get(A, ["x", "y"]) == {"x": b"1"}
        assert await storage.inbox_read(A) == [InboxMessage("m1", b"hello")]
        assert await storage.steps_read(A, "inv") == [b"step0"]
        untouched = [rem(A, "r1", 10.0, data=b"one"), rem(A, "r2", 20.0, period=5.0)]
        assert await storage.reminders_of(A) == untouched
        assert await storage.reminders_due([0], 1e12) == untouched
        assert await storage.reminders_due([0], 15.0) == untouched[:1]

    def _doomed(self, fence: Fence) -> Commit:
        """Changes everything ``_pending_work`` left: cancels r1, moves r2, adds r3."""
        return Commit(
            A,
            fence,
            rec(2),
            kv_writes={"x": None, "y": b"2"},
            inbox_ack="m1",
            clear_steps="inv",
            reminders={
                "r1": None,
                "r2": rem(A, "r2", 5.0, data=b"moved"),
                "r3": rem(A, "r3", 1.0, period=60.0, data=b"new"),
            },
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
        applied = [rem(A, "r2", 5.0, data=b"moved"), rem(A, "r3", 1.0, period=60.0, data=b"new")]
        assert await storage.reminders_of(A) == applied
        assert await storage.reminders_due([0], 1e12) == applied[::-1]
        assert await storage.reminders_due([0], 4.0) == applied[1:]

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
        for seq, msg_id in ((3, "1"), (4, "3")):
            await commit_one(storage, Commit(A, fence, rec(seq), inbox_ack=msg_id))
        assert await storage.inbox_actors([A.partition]) == [A]
        await commit_one(storage, Commit(A, fence, rec(5), inbox_ack="4"))
        assert await storage.inbox_read(A) == []
        assert await storage.inbox_actors([A.partition]) == []  # nothing waits any more
        assert await seqs(storage, A) == [1, 2, 3, 4, 5]

    async def test_a_reminder_firing_turn_empties_the_inbox_index(self, storage: Storage) -> None:
        # A fired reminder is an inbox message whose turn moves the reminder on in the same
        # commit: consuming it must leave the actor out of the actors with waiting tells,
        # or every hand-off would wake every actor that ever fired a reminder.
        fence = await take(storage)
        await commit_one(storage, Commit(A, fence, rec(1), reminders={"r": rem(due=10.0)}))
        await storage.inbox_put(A, fence, InboxMessage("reminder:r:10.000", b""))
        moved = {"r": rem(due=20.0), "gone": None}
        await commit_one(
            storage, Commit(A, fence, rec(2), inbox_ack="reminder:r:10.000", reminders=moved)
        )
        assert await storage.inbox_read(A) == []
        assert await storage.inbox_actors([A.partition]) == []
        assert [r.due for r in await storage.reminders_of(A)] == [20.0]

    async def test_inbox_put_is_fenced(self, storage: Storage) -> None:
        old = await take(storage)
        await storage.claim(0, "s2", dead=["s1"])
        with pytest.raises(FencedWrite):
            await storage.inbox_put(A, old, InboxMessage("m", b"x"))
        assert await storage.inbox_read(A) == []
        assert await storage.inbox_actors([0]) == []

    async def test_inbox_put_many_puts_each_independently(self, storage: Storage) -> None:
        fence = await take(storage)
        await storage.inbox_put(A, fence, InboxMessage("old", b"o"))
        stale = await take(storage, partition=1)
        await storage.claim(1, "s2", dead=["s1"])
        batch = [
            InboxPut(A, fence, InboxMessage("z", b"zz")),
            InboxPut(A, fence, InboxMessage("old", b"again")),  # waiting already
            InboxPut(C1, stale, InboxMessage("c", b"c")),  # fenced
            InboxPut(A, stale, InboxMessage("x", b"x")),  # a fence of another partition
            InboxPut(B, fence, InboxMessage("z", b"for b")),
            InboxPut(A, fence, InboxMessage("a", b"aa")),
            InboxPut(A, fence, InboxMessage("a", b"twice in one batch")),
        ]
        results = await storage.inbox_put_many(batch)
        assert [r if isinstance(r, bool) else type(r) for r in results] == [
            True,
            False,
            FencedWrite,
            FencedWrite,
            True,
            True,
            False,
        ]
        assert await storage.inbox_read(A) == [
            InboxMessage("old", b"o"),
            InboxMessage("z", b"zz"),
            InboxMessage("a", b"aa"),
        ]
        assert await storage.inbox_read(B) == [InboxMessage("z", b"for b")]
        assert await storage.inbox_read(C1) == []
        assert await storage.inbox_actors([0, 1]) == [A, B]
        assert await storage.inbox_put_many([]) == []

    async def test_outbox_actors_until_a_snapshot_covers_their_tells(
        self, storage: Storage
    ) -> None:
        # A record with tells lists its actor until a snapshot at or past it: a crash before
        # the tells went out must leave something that tells the next owner to send them.
        fence = await take(storage)
        await commit_one(storage, Commit(A, fence, rec(1)))
        assert await storage.outbox_actors([A.partition]) == []
        await commit_one(storage, Commit(A, fence, rec(2), sends=True))
        await storage.inbox_put(A, fence, InboxMessage("m", b""))
        await commit_one(
            storage, Commit(A, fence, rec(3), kv_writes={"k": b"v"}, inbox_ack="m", sends=True)
        )
        await commit_one(storage, Commit(A, fence, rec(4)))
        await commit_one(storage, Commit(B, fence, rec(1), sends=True))
        assert await storage.outbox_actors([A.partition]) == [A, B]
        assert await storage.inbox_actors([A.partition]) == []  # the ack is unaffected
        await storage.write_snapshot(A, fence, Snapshot(2, b"s"))
        assert await storage.outbox_actors([A.partition]) == [A, B]  # record 3 not covered
        [written] = await storage.write_snapshots([SnapshotPut(A, fence, Snapshot(3, b"s"))])
        assert written is None
        assert await storage.outbox_actors([A.partition]) == [B]
        await commit_one(storage, Commit(A, fence, rec(5), sends=True))
        await storage.write_snapshot(B, fence, Snapshot(1, b"s"))
        assert await storage.outbox_actors([A.partition]) == [A]
        await storage.write_snapshot(A, fence, Snapshot(5, b"s"))
        assert await storage.outbox_actors([A.partition]) == []

    async def test_outbox_actors_by_partition_and_fenced(self, storage: Storage) -> None:
        for p in (0, 1, 2, 1023):
            fence = await take(storage, partition=p)
            await commit_one(storage, Commit(ActorKey("t", f"k{p}", p), fence, rec(1), sends=True))
        stale = await take(storage, partition=3)
        await storage.claim(3, "s2", dead=["s1"])
        [refused] = await storage.commit([Commit(ActorKey("t", "x", 3), stale, rec(1), sends=True)])
        assert isinstance(refused, FencedWrite)
        assert await storage.outbox_actors({2, 3, 1023, 7}) == [
            ActorKey("t", "k2", 2),
            ActorKey("t", "k1023", 1023),
        ]
        assert len(await storage.outbox_actors(range(1024))) == 4
        assert await storage.outbox_actors([]) == []

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

    # -- activation ------------------------------------------------------------------------

    async def test_load_actor_of_a_new_actor_is_empty(self, storage: Storage) -> None:
        assert await storage.load_actor(A) == ActorLoad(None, [], {}, [])

    async def test_load_actor_reads_what_the_single_reads_read(self, storage: Storage) -> None:
        fence = await take(storage)
        await storage.commit([Commit(A, fence, rec(s)) for s in range(1, 6)])
        await storage.write_snapshot(A, fence, Snapshot(3, b"three"))
        for inv, index in [("i1", 0), ("i1", 1), ("i2", 1)]:
            await storage.step_put(A, fence, inv, index, f"{inv}:{index}".encode())
        for message_id in ("m2", "m1", "m3"):
            await storage.inbox_put(A, fence, InboxMessage(message_id, message_id.encode()))
        await storage.commit([Commit(B, fence, rec(1))])  # another actor: not read
        await storage.inbox_put(B, fence, InboxMessage("b", b"b"))
        loaded = await storage.load_actor(A)
        assert loaded == ActorLoad(
            Snapshot(3, b"three"),
            [rec(4), rec(5)],
            {"i1": [b"i1:0", b"i1:1"]},
            [InboxMessage("m2", b"m2"), InboxMessage("m1", b"m1"), InboxMessage("m3", b"m3")],
        )
        assert loaded.journal == await storage.read_journal(A, 3)
        assert loaded.steps == await storage.steps_pending(A)
        assert loaded.inbox == await storage.inbox_read(A)

    async def test_load_actor_reads_a_long_journal_whole(self, storage: Storage) -> None:
        fence = await take(storage)
        await storage.commit([Commit(A, fence, rec(s)) for s in range(1, 2503)])
        loaded = await storage.load_actor(A)
        assert loaded.snapshot is None
        assert [r.seq for r in loaded.journal] == list(range(1, 2503))
        await storage.write_snapshot(A, fence, Snapshot(1200, b"s"))
        loaded = await storage.load_actor(A)
        assert [r.seq for r in loaded.journal] == list(range(1201, 2503))

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

    async def test_write_snapshots_writes_each_independently(self, storage: Storage) -> None:
        fence = await take(storage)
        stale = await take(storage, partition=1)
        await storage.claim(1, "s2", dead=["s1"])
        other = ActorKey("t", "other", 1)
        await storage.commit([Commit(A, fence, rec(s)) for s in range(1, 4)])
        await storage.commit([Commit(B, fence, rec(s)) for s in range(1, 3)])
        results = await storage.write_snapshots(
            [
                SnapshotPut(A, fence, Snapshot(2, b"a2")),
                SnapshotPut(other, stale, Snapshot(1, b"stale")),
                SnapshotPut(B, fence, Snapshot(2, b"b2")),
                SnapshotPut(A, fence, Snapshot(1, b"older")),  # ignored: never back in time
            ]
        )
        assert results[0] is None and results[2] is None and results[3] is None
        assert isinstance(results[1], FencedWrite)
        assert await storage.read_snapshot(A) == Snapshot(2, b"a2")
        assert await storage.read_journal(A) == [rec(3)]
        assert await storage.read_snapshot(B) == Snapshot(2, b"b2")
        assert await storage.read_journal(B) == []
        assert await storage.read_snapshot(other) is None
        assert await storage.write_snapshots([]) == []

    # -- reminders -------------------------------------------------------------------------

    async def test_reminder_set_list_replace_cancel(self, storage: Storage) -> None:
        fence = await take(storage)
        assert await storage.reminders_of(A) == []
        await storage.reminder_set(fence, rem(A, "b", 20.0, data=b"B"))
        await storage.reminder_set(fence, rem(A, "a", 30.0, period=5.0, data=b"A"))
        await storage.reminder_set(fence, rem(B, "a", 10.0))
        a, b = rem(A, "a", 30.0, period=5.0, data=b"A"), rem(A, "b", 20.0, data=b"B")
        assert await storage.reminders_of(A) == [a, b]  # by name
        assert await storage.reminders_of(B) == [rem(B, "a", 10.0)]
        assert await storage.reminders_due([0], 100.0) == [rem(B, "a", 10.0), b, a]

        # Replacing changes every field and moves the index entry: nothing stale is left.
        b2 = rem(A, "b", 40.0, period=1.5, data=b"B2")
        await storage.reminder_set(fence, b2)
        assert await storage.reminders_of(A) == [a, b2]
        assert await storage.reminders_due([0], 25.0) == [rem(B, "a", 10.0)]
        assert await storage.reminders_due([0], 40.0) == [rem(B, "a", 10.0), a, b2]
        b3 = rem(A, "b", 1.0)  # earlier this time
        await storage.reminder_set(fence, b3)
        assert await storage.reminders_due([0], 5.0) == [b3]

        assert await storage.reminder_cancel(fence, A, "b") is True
        assert await storage.reminder_cancel(fence, A, "b") is False
        assert await storage.reminder_cancel(fence, A, "never") is False
        assert await storage.reminders_of(A) == [a]
        assert await storage.reminders_due([0], 1e12) == [rem(B, "a", 10.0), a]
        assert await storage.reminder_cancel(fence, A, "a") is True
        assert await storage.reminder_cancel(fence, B, "a") is True
        assert await storage.reminders_of(A) == []
        assert await storage.reminders_due([0], math.inf) == []

    async def test_reminder_names_may_hold_the_runtimes_prefix(self, storage: Storage) -> None:
        # The runtime's own reminders (workflow wake-ups) are named "\x01wake:<run>:<due>".
        fence = await take(storage)
        wake = rem(A, "\x01wake:run-1:5.000", 5.0)
        await storage.reminder_set(fence, wake)
        await commit_one(storage, Commit(A, fence, rec(1), reminders={"\x01wake:b:9.000": None}))
        assert await storage.reminders_of(A) == [wake]
        assert await storage.reminders_due([0], 6.0) == [wake]
        assert await storage.reminder_cancel(fence, A, "\x01wake:run-1:5.000") is True
        assert await storage.reminders_of(A) == []

    async def test_reminders_of_is_per_actor(self, storage: Storage) -> None:
        f0, f1 = await take(storage), await take(storage, partition=1)
        await storage.reminder_set(f0, rem(A, "x", 1.0))
        await storage.reminder_set(f0, rem(B, "x", 2.0))
        await storage.reminder_set(f1, rem(C1, "x", 3.0))
        assert await storage.reminders_of(A) == [rem(A, "x", 1.0)]
        assert await storage.reminders_of(B) == [rem(B, "x", 2.0)]
        assert await storage.reminders_of(C1) == [rem(C1, "x", 3.0)]
        assert await storage.reminders_of(ActorKey("counter", "nobody", 0)) == []
        # A commit touches only its own actor's reminders, even under the same name.
        await commit_one(storage, Commit(A, f0, rec(1), reminders={"x": None}))
        assert await storage.reminders_of(A) == []
        assert await storage.reminders_of(B) == [rem(B, "x", 2.0)]

    async def test_reminder_writes_are_fenced(self, storage: Storage) -> None:
        fence = await take(storage)
        keep = rem(A, "keep", 10.0, data=b"k")
        await storage.reminder_set(fence, keep)
        elsewhere = await take(storage, partition=5)

        async def refused(bad: Fence) -> None:
            with pytest.raises(FencedWrite):
                await storage.reminder_set(bad, rem(A, "new", 1.0))
            with pytest.raises(FencedWrite):
                await storage.reminder_set(bad, rem(A, "keep", 99.0))
            with pytest.raises(FencedWrite):
                await storage.reminder_cancel(bad, A, "keep")
            with pytest.raises(FencedWrite):
                await storage.reminder_cancel(bad, A, "never")
            assert await storage.reminders_of(A) == [keep]
            assert await storage.reminders_due([0, 5], math.inf) == [keep]

        await refused(Fence(0, "s2", fence.epoch))  # wrong silo
        await refused(Fence(0, "s1", fence.epoch + 1))  # wrong epoch
        await refused(elsewhere)  # a fence of another partition
        assert await storage.claim(0, "s2", dead=["s1"]) == fence.epoch + 1
        await refused(fence)  # stale: taken over
        assert await storage.release(Fence(0, "s2", fence.epoch + 1))
        await refused(Fence(0, "s2", fence.epoch + 1))  # released

    async def test_reminders_commit_with_their_record(self, storage: Storage) -> None:
        fence = await take(storage)
        await storage.reminder_set(fence, rem(A, "old", 5.0))
        await storage.reminder_set(fence, rem(A, "moved", 6.0))
        reminders: dict[str, Reminder | None] = {
            "new": rem(A, "new", 7.0, period=60.0, data=b"n"),
            "moved": rem(A, "moved", 8.0),
            "old": None,
            "absent": None,  # cancelling what does not exist is no error
        }
        await commit_one(
            storage, Commit(A, fence, rec(1), kv_writes={"x": b"1"}, reminders=reminders)
        )
        assert await seqs(storage, A) == [1]
        assert await storage.kv_get(A, ["x"]) == {"x": b"1"}
        new, moved = rem(A, "new", 7.0, period=60.0, data=b"n"), rem(A, "moved", 8.0)
        assert await storage.reminders_of(A) == [moved, new]
        assert await storage.reminders_due([0], 6.5) == []
        assert await storage.reminders_due([0], 100.0) == [new, moved]
        # A commit with only reminders to cancel empties the actor's reminders.
        await commit_one(storage, Commit(A, fence, rec(2), reminders={"new": None, "moved": None}))
        assert await storage.reminders_of(A) == []
        assert await storage.reminders_due([0], 100.0) == []

    async def test_rejected_commit_applies_no_reminders(self, storage: Storage) -> None:
        fence = await self._pending_work(storage)
        results = await storage.commit(
            [
                Commit(A, fence, rec(1, b"again"), reminders={"r1": None, "n": rem(A, "n")}),
                Commit(B, fence, rec(1), reminders={"b": rem(B, "b", 2.0)}),
                Commit(A, fence, rec(2), reminders={"r2": None}),
                Commit(A, fence, rec(2), reminders={"r1": None, "m": rem(A, "m", 3.0)}),
            ]
        )
        assert results[1] is None and results[2] is None
        for bad in (results[0], results[3]):
            assert isinstance(bad, StorageError) and not isinstance(bad, FencedWrite)
        one = rem(A, "r1", 10.0, data=b"one")
        assert await storage.reminders_of(A) == [one]
        assert await storage.reminders_due([0], 1e12) == [rem(B, "b", 2.0), one]

        assert await storage.claim(0, "s2", dead=["s1"]) == fence.epoch + 1
        [fenced] = await storage.commit([Commit(A, fence, rec(3), reminders={"r1": None})])
        assert isinstance(fenced, FencedWrite)
        assert await storage.reminders_of(A) == [one]
        assert await seqs(storage, A) == [1, 2]

    @pytest.mark.parametrize(
        "reminders",
        [
            {"x": rem(B, "x")},  # another actor's
            {"x": rem(ActorKey("counter", "a", 1), "x")},  # the actor in another partition
            {"x": rem(A, "y")},  # filed under another name
            {"x": rem(A, "x", due=math.nan)},
            {"x": rem(A, "x", due=math.inf)},
            {"x": rem(A, "x", period=0.0)},
            {"x": rem(A, "x", period=-1.0)},
            {"x": rem(A, "x", period=math.inf)},
        ],
        ids=["actor", "partition", "name", "due-nan", "due-inf", "period-0", "period<0", "inf"],
    )
    async def test_malformed_commit_reminders_apply_nothing(
        self, storage: Storage, reminders: dict[str, Reminder | None]
    ) -> None:
        fence = await take(storage)
        batch = [
            Commit(A, fence, rec(1), kv_writes={"k": b"v"}, reminders={"ok": rem(), **reminders}),
            Commit(B, fence, rec(1), reminders={"b": rem(B, "b")}),
        ]
        results = await storage.commit(batch)
        assert isinstance(results[0], StorageError) and not isinstance(results[0], FencedWrite)
        assert results[1] is None
        assert await seqs(storage, A) == []
        assert await storage.kv_get(A, ["k"]) == {}
        assert await storage.reminders_of(A) == []
        assert await storage.reminders_due([0, 1], math.inf) == [rem(B, "b")]

    async def test_invalid_reminder_arguments_are_refused(self, storage: Storage) -> None:
        fence = await take(storage)
        for bad in (
            rem(due=math.nan),
            rem(due=math.inf),
            rem(due=-math.inf),
            rem(period=0.0),
            rem(period=-2.0),
            rem(period=math.nan),
        ):
            with pytest.raises(ValueError):
                await storage.reminder_set(fence, bad)
        assert await storage.reminders_of(A) == []
        with pytest.raises(ValueError):
            await storage.reminders_due([0], math.nan)
        await storage.reminder_set(fence, rem(due=-5.0))  # any finite time is fine
        assert await storage.reminders_due([0], 0.0, limit=0) == []
        assert await storage.reminders_due([0], 0.0, limit=-1) == []
        assert await storage.reminders_due([0], -math.inf) == []
        assert await storage.reminders_due([0], math.inf) == [rem(due=-5.0)]

    async def test_reminders_due_orders_and_bounds_across_partitions(
        self, storage: Storage
    ) -> None:
        parts = [0, 1, 7, 512, 1023]
        fences = {p: await take(storage, partition=p) for p in parts}
        everything: list[Reminder] = []
        rng = random.Random(7)
        # Partition 0 holds most of the earliest (a merge must go back to it for more);
        # due times repeat, within a partition and across partitions, to pin the tie order.
        for i in range(120):
            p = 0 if i < 60 else parts[i % len(parts)]
            due = float(rng.randrange(0, 30) if p == 0 else rng.randrange(0, 100))
            actor = ActorKey("t" if i % 3 else "u", f"k{i % 4}", p)
            everything.append(rem(actor, f"n{i}", due, data=b"%d" % i))
        for reminder in everything:
            await storage.reminder_set(fences[reminder.actor.partition], reminder)

        for until in (-1.0, 0.0, 5.0, 29.0, 29.5, 50.0, 99.0, math.inf):
            for limit in (1, 2, 3, 5, 17, 59, 60, 61, 119, 120, 1000):
                got = await storage.reminders_due(parts, until, limit)
                assert got == expected_due(everything, parts, until, limit), (until, limit)
        assert len(await storage.reminders_due(parts, math.inf)) == 120
        # ``until`` is inclusive: exactly at a due time counts as due.
        some = everything[70]
        got = await storage.reminders_due(parts, some.due)
        assert some in got and all(r.due <= some.due for r in got)
        assert got == expected_due(everything, parts, some.due, 1000)

    async def test_reminders_due_reads_only_the_requested_partitions(
        self, storage: Storage
    ) -> None:
        every = []
        for p in (0, 1, 2, 3):
            fence = await take(storage, partition=p)
            reminder = rem(ActorKey("t", "k", p), "r", float(10 - p))
            await storage.reminder_set(fence, reminder)
            every.append(reminder)
        assert await storage.reminders_due({1, 3, 9}, math.inf) == [every[3], every[1]]
        assert await storage.reminders_due([1, 1, 3], math.inf) == [every[3], every[1]]
        assert await storage.reminders_due(range(2, 1024), math.inf) == [every[3], every[2]]
        assert await storage.reminders_due([9], math.inf) == []
        assert await storage.reminders_due([], math.inf) == []

    async def test_reminder_due_times_round_trip_exactly(self, storage: Storage) -> None:
        fence = await take(storage)
        base = 1_712_345_678.0
        dues = [
            base + 0.001,
            base + 0.002,
            base + 0.0015,
            base + 0.123456,  # microseconds
            time.time(),
            0.001,
            0.0,
            -5.25,
            1e-9,
            2.0**53,
            4102444800.000001,  # 2100-01-01 plus a microsecond
        ]
        stored = [rem(A, f"d{i:02}", due) for i, due in enumerate(dues)]
        for reminder in stored:
            await storage.reminder_set(fence, reminder)
        listed = await storage.reminders_of(A)
        assert listed == stored
        assert [r.due for r in listed] == dues and all(type(r.due) is float for r in listed)
        assert await storage.reminders_due([0], math.inf) == sorted(stored, key=due_order)
        # A millisecond apart is apart: until is inclusive and exact.
        upto = [r.due for r in await storage.reminders_due([0], base + 0.001)]
        assert upto[-1] == base + 0.001 and base + 0.0015 not in upto
        upto = [r.due for r in await storage.reminders_due([0], base + 0.0015)]
        assert upto[-2:] == [base + 0.001, base + 0.0015]

    async def test_periodic_and_one_shot_round_trip(self, storage: Storage) -> None:
        fence = await take(storage)
        stored = [
            rem(A, "daily", 50.0, period=86_400.0),
            rem(A, "fast", 40.0, period=0.001),
            rem(A, "odd", 30.0, period=1 / 3),
            rem(A, "once", 20.0),
        ]
        for reminder in stored:
            await storage.reminder_set(fence, reminder)
        listed = await storage.reminders_of(A)
        assert listed == stored
        assert listed[3].period is None
        assert all(type(r.period) is float for r in listed[:3])
        assert await storage.reminders_due([0], 100.0) == stored[::-1]
        # Periodic to one-shot and back, by replacing.
        await storage.reminder_set(fence, rem(A, "daily", 50.0))
        await commit_one(
            storage, Commit(A, fence, rec(1), reminders={"once": rem(A, "once", 20.0, 7.0)})
        )
        listed = await storage.reminders_of(A)
        assert listed[0] == rem(A, "daily", 50.0) and listed[0].period is None
        assert listed[3] == rem(A, "once", 20.0, period=7.0)

    @pytest.mark.parametrize(
        "payload",
        [b"", b":", bytes(range(256)), os.urandom(1 << 16)],
        ids=["empty", "colon", "all-bytes", "64KB"],
    )
    async def test_reminder_data_round_trip(self, storage: Storage, payload: bytes) -> None:
        actor = ActorKey("tÿpe/é:x", "kéy with spaces/ünicode:1:2", 0)
        fence = await take(storage)
        await storage.reminder_set(fence, rem(actor, "set", 1.0, period=2.5, data=payload))
        await commit_one(
            storage,
            Commit(
                actor, fence, rec(1), reminders={"commit": rem(actor, "commit", 2.0, data=payload)}
            ),
        )
        for reminder in await storage.reminders_of(actor):
            assert type(reminder.data) is bytes and reminder.data == payload
        due = await storage.reminders_due([0], 10.0)
        assert due == [
            rem(actor, "set", 1.0, period=2.5, data=payload),
            rem(actor, "commit", 2.0, data=payload),
        ]
        assert all(type(r.data) is bytes for r in due)

    async def test_reminder_names_are_opaque_and_tie_in_name_order(self, storage: Storage) -> None:
        fence = await take(storage)
        names = ["", "a", "a\x00", "a\x00b", "a\x01", "a:b", "ab", "é", "\uffff", "😀", "b" * 300]
        actors = [ActorKey("t", "k", 0), ActorKey("t", "k\x00", 0), ActorKey("t:k", "", 0)]
        stored = [rem(actor, name, 5.0, data=name.encode()) for actor in actors for name in names]
        for reminder in reversed(stored):
            await storage.reminder_set(fence, reminder)
        for actor in actors:
            assert await storage.reminders_of(actor) == sorted(
                (r for r in stored if r.actor == actor), key=lambda r: r.name
            )
        ordered = sorted(stored, key=due_order)
        assert await storage.reminders_due([0], 5.0) == ordered
        for limit in (1, 4, 12, 20):
            assert await storage.reminders_due([0], 5.0, limit) == ordered[:limit]
        assert await storage.reminder_cancel(fence, actors[1], "a\x00")
        assert await storage.reminder_cancel(fence, actors[0], "")
        left = [
            r for r in ordered if (r.actor, r.name) not in {(actors[1], "a\x00"), (actors[0], "")}
        ]
        assert await storage.reminders_due([0], 5.0) == left

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
