"""MemoryStorage against the storage contract, plus its restart-in-process convenience."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bayou.storage import Commit, MemoryStorage, Storage
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
