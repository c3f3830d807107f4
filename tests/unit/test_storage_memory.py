"""MemoryStorage against the storage contract, plus its restart-in-process convenience."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from bayou.storage import Commit, MemoryStorage, Storage
from bayou.storage.memory import EarliestDue
from tests.unit.storage_conformance import A, StorageConformance, rec, take


class TestMemory(StorageConformance):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[Storage]:
        store = MemoryStorage()
        await store.open()
        yield store
        await store.close()


async def test_reopen_keeps_data() -> None:
    store = MemoryStorage()
    fence = await take(store)
    assert await store.commit([Commit(A, fence, rec(1), kv_writes={"x": b"1"})]) == [None]
    await store.close()
    await store.open()
    assert await store.read_journal(A) == [rec(1)]
    assert await store.kv_get(A, ["x"]) == {"x": b"1"}
    assert (await store.owner(0)).epoch == fence.epoch


def drive(index: dict[int, list[tuple[float, str]]], limit: int) -> tuple[list[object], int, int]:
    """Run EarliestDue over in-memory indexes: (answer, rounds, entries read)."""
    merge: EarliestDue[str] = EarliestDue(sorted(index), limit)
    rounds = read = 0
    while ranges := merge.ranges():
        rounds += 1
        replies = [index[p][offset : offset + count] for p, offset, count in ranges]
        read += sum(map(len, replies))
        merge.add(replies)
    return list(merge.earliest), rounds, read


@pytest.mark.parametrize("seed", range(40))
def test_earliest_due_is_exact_and_bounded(seed: int) -> None:
    rng = random.Random(seed)
    partitions = rng.choice([1, 2, 7, 64, 300])
    index: dict[int, list[tuple[float, str]]] = {}
    for p in range(partitions):
        size = rng.choice([0, 1, 3, 50, 400]) if rng.random() < 0.9 else 2000
        spread = rng.choice([10, 1000])  # small spreads make many ties
        index[p] = sorted((float(rng.randrange(spread)), f"n{i}") for i in range(size))
    everything = sorted((due, p, tie) for p, rows in index.items() for due, tie in rows)
    for limit in (1, 5, 100, 1000):
        answer, rounds, read = drive(index, limit)
        assert answer == everything[:limit]
        assert rounds <= 10
        assert read <= 5 * (limit + partitions)  # 4.3 at worst over 1,600 random cases


def test_earliest_due_drops_entries_read_twice() -> None:
    """A range shifted back by a change between rounds (Redis) repeats entries."""
    merge: EarliestDue[str] = EarliestDue([0, 1], 4)
    assert merge.ranges() == [(0, 0, 4), (1, 0, 4)]
    merge.add([[(1.0, "a"), (2.0, "b"), (3.0, "c"), (4.0, "d")], [(9.0, "z")]])
    assert merge.ranges() == []  # partition 0's last entry is the 4th earliest: done
    merge = EarliestDue([0, 1, 2, 3], 4)
    assert merge.ranges() == [(p, 0, 2) for p in range(4)]
    merge.add([[(1.0, "a"), (2.0, "b")], [], [], []])
    assert merge.ranges() == [(0, 2, 2)]  # at most 2 more can make the cut
    merge.add([[(2.0, "b"), (3.0, "c")]])  # "b" again: something was inserted before it
    assert merge.ranges() == [(0, 4, 1)]
    merge.add([[(4.0, "d")]])
    assert merge.ranges() == []
    assert merge.earliest == [(1.0, 0, "a"), (2.0, 0, "b"), (3.0, 0, "c"), (4.0, 0, "d")]
    assert EarliestDue([0], 0).ranges() == []
