"""The partitions this silo owns: claimed on first use, fenced by epoch, released on hand-off.

A claim succeeds only if the partition is free, already ours, or held by a silo that
membership has declared dead. While its previous owner is still alive and handing it off,
the claim waits (bounded) for the release instead of failing at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bayou.clock import Clock
from bayou.errors import Unavailable
from bayou.storage.contract import Fence, Storage

log = logging.getLogger("bayou.ownership")


class PartitionOwnership:
    """Claims partitions for one silo and hands out the fence for each.

    ``is_dead(silo)`` comes from membership; ``wants(partition)`` from the ring: a
    partition the ring gives to another silo is never claimed (or is given back at once).
    """

    def __init__(
        self,
        storage: Storage,
        silo: str,
        *,
        is_dead: Callable[[str], bool],
        wants: Callable[[int], bool] = lambda partition: True,
        clock: Clock | None = None,
        claim_wait: float = 10.0,
    ) -> None:
        self._storage = storage
        self._silo = silo
        self._is_dead = is_dead
        self._wants = wants
        self._clock = clock or Clock()
        self._claim_wait = claim_wait
        self._fences: dict[int, Fence] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.claims = 0
        self.takeovers = 0  # claims taken from a dead silo

    def held(self) -> dict[int, Fence]:
        return dict(self._fences)

    async def fence(self, partition: int) -> Fence:
        """The fence for ``partition``, claiming it first if needed (waiting for a hand-off)."""
        fence = self._fences.get(partition)
        if fence is not None:
            return fence
        lock = self._locks.setdefault(partition, asyncio.Lock())
        async with lock:
            fence = self._fences.get(partition)
            if fence is None:
                fence = await self._claim(partition)
                self._fences[partition] = fence
            return fence

    async def _claim(self, partition: int) -> Fence:
        deadline = self._clock.monotonic() + self._claim_wait
        pause = 0.02
        while True:
            if not self._wants(partition):
                raise Unavailable(f"partition {partition} belongs to another silo now; retry")
            current = await self._storage.owner(partition)
            dead = [current.silo] if current.silo and self._is_dead(current.silo) else []
            epoch = await self._storage.claim(partition, self._silo, dead)
            if epoch is not None:
                fence = Fence(partition, self._silo, epoch)
                if not self._wants(partition):  # the ring moved while we claimed
                    await self._storage.release(fence)
                    raise Unavailable(f"partition {partition} belongs to another silo now; retry")
                self.claims += 1
                if dead:
                    self.takeovers += 1
                    log.info("took partition %d over from dead silo %s", partition, dead[0])
                return fence
            if self._clock.monotonic() >= deadline:
                raise Unavailable(
                    f"partition {partition} is still held by live silo {current.silo}; retry"
                )
            # The previous owner is handing off: it releases once its turns are done.
            await self._clock.sleep(pause)
            pause = min(pause * 2, 0.25)

    def forget(self, partition: int) -> None:
        """Drop a fence that storage rejected: the partition is no longer ours."""
        self._fences.pop(partition, None)

    async def release(self, partition: int) -> None:
        """Give one partition back (hand-off): the next owner may claim it at once."""
        fence = self._fences.pop(partition, None)
        if fence is not None:
            await self._storage.release(fence)

    async def release_all(self) -> None:
        """Give every held partition back (graceful shutdown)."""
        for partition in list(self._fences):
            await self.release(partition)
