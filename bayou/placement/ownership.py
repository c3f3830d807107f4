"""The partitions this silo owns, claimed lazily and fenced by epoch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bayou.errors import Unavailable
from bayou.storage.contract import Fence, Storage


class PartitionOwnership:
    """Claims partitions for one silo and hands out the fence for each.

    ``is_dead(silo)`` comes from membership: a partition held by a silo that membership
    has declared dead may be taken (bumping the epoch); one held by a live silo may not.
    """

    def __init__(self, storage: Storage, silo: str, is_dead: Callable[[str], bool]) -> None:
        self._storage = storage
        self._silo = silo
        self._is_dead = is_dead
        self._fences: dict[int, Fence] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def held(self) -> dict[int, Fence]:
        return dict(self._fences)

    async def fence(self, partition: int) -> Fence:
        """The fence for ``partition``, claiming it first if needed."""
        fence = self._fences.get(partition)
        if fence is not None:
            return fence
        lock = self._locks.setdefault(partition, asyncio.Lock())
        async with lock:
            fence = self._fences.get(partition)
            if fence is not None:
                return fence
            current = await self._storage.owner(partition)
            dead = [current.silo] if current.silo and self._is_dead(current.silo) else []
            epoch = await self._storage.claim(partition, self._silo, dead)
            if epoch is None:
                raise Unavailable(f"partition {partition} is owned by live silo {current.silo}")
            fence = Fence(partition, self._silo, epoch)
            self._fences[partition] = fence
            return fence

    def forget(self, partition: int) -> None:
        """Drop a fence that storage rejected: the partition is no longer ours."""
        self._fences.pop(partition, None)

    async def release_all(self) -> None:
        """Give every held partition back (graceful shutdown)."""
        fences, self._fences = self._fences, {}
        for fence in fences.values():
            await self._storage.release(fence)
