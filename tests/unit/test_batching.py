"""TurnBatcher: the requests of one loop turn share one batch call, each gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from bayou.errors import StorageError
from bayou.storage.batching import TurnBatcher


async def test_requests_of_one_loop_turn_share_a_batch_and_get_their_own_results() -> None:
    batches: list[list[int]] = []

    async def double(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        await asyncio.sleep(0)
        return [ValueError(f"odd {i}") if i % 2 else i * 2 for i in items]

    batcher: TurnBatcher[int, int] = TurnBatcher(double, max_batch=4)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)), return_exceptions=True)
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # one turn, batches of at most 4
    assert results[0::2] == [0, 4, 8, 12, 16]
    assert [str(r) for r in results[1::2]] == [f"odd {i}" for i in (1, 3, 5, 7, 9)]
    assert await batcher.submit(20) == 40  # a later turn: a batch of its own
    assert batches[-1] == [20]


async def test_a_failed_batch_fails_each_of_its_requests_and_a_caller_may_give_up() -> None:
    release = asyncio.Event()

    async def broken(items: list[str]) -> list[str | BaseException]:
        await release.wait()
        raise StorageError("the store is down")

    batcher: TurnBatcher[str, str] = TurnBatcher(broken, max_batch=10)
    gives_up = asyncio.ensure_future(batcher.submit("a"))
    waits = asyncio.ensure_future(batcher.submit("b"))
    await asyncio.sleep(0.01)
    gives_up.cancel()
    release.set()
    with pytest.raises(StorageError, match="down"):
        await waits
    assert gives_up.cancelled()
