"""Hand-off: making this silo's activations and ownership follow the ring as it changes.

When a partition leaves this silo, its activations finish the turns already queued, snapshot
and close, and only then is the partition released, so its next owner (which waits for the
release) activates from complete storage. When a partition arrives, actors in it with
waiting tells are activated, since their previous owner may have crashed with tells
accepted but not yet applied.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bayou.placement.membership import MembershipView
from bayou.placement.ring import PartitionRing
from bayou.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bayou.runtime.silo import Silo

log = logging.getLogger("bayou.handoff")

# Partitions handed off at the same time; each one deactivates its activations concurrently.
PARALLEL_HANDOFFS = 32


class Rebalancer:
    """Applies ring changes one at a time, always to the latest ring."""

    def __init__(self, silo: Silo) -> None:
        self._silo = silo
        self._latest: PartitionRing | None = None
        self._task: asyncio.Task[None] | None = None
        self._waking: set[asyncio.Task[None]] = set()
        self._mine: frozenset[int] = frozenset()
        self.handoffs = 0

    async def on_view(self, view: MembershipView, ring: PartitionRing) -> None:
        if ring is self._latest:
            return
        self._latest = ring
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def settle(self) -> None:
        """Wait until the latest ring has been applied (hand-offs done)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        applied: PartitionRing | None = None
        while self._latest is not applied:
            applied = self._latest
            assert applied is not None
            try:
                await self._apply(applied)
            except Exception:
                log.exception("applying ring change failed; partitions are retried next change")

    async def _apply(self, ring: PartitionRing) -> None:
        silo = self._silo
        mine = ring.partitions_of(silo.silo_id)
        activations = silo.catalog.by_partition()
        lost = (set(silo.ownership.held()) | set(activations)) - mine
        if lost:
            log.info("handing off %d partitions", len(lost))
        pending = sorted(lost)
        for start in range(0, len(pending), PARALLEL_HANDOFFS):
            batch = pending[start : start + PARALLEL_HANDOFFS]
            await asyncio.gather(*(self._hand_off(p) for p in batch))
        gained = mine - self._mine
        self._mine = mine
        if gained:
            self.wake(sorted(gained))

    def wake(self, partitions: list[int], delay: float = 0.0) -> None:
        """In the background, after ``delay`` seconds, activate the actors of
        ``partitions`` whose inboxes hold tells (``Silo.wake_inboxes``); ended by ``stop``."""
        silo = self._silo
        if silo.stopping:
            return

        async def wake() -> None:
            if delay > 0:
                await silo.clock.sleep(delay)
            try:
                await silo.wake_inboxes(partitions)
            except Exception:
                log.exception("waking the inboxes of %d partitions failed", len(partitions))

        task = asyncio.get_running_loop().create_task(wake())
        self._waking.add(task)
        task.add_done_callback(self._waking.discard)

    async def _hand_off(self, partition: int) -> None:
        silo = self._silo
        # Read the activations now, not when the change was noticed: one may have been
        # created meanwhile by a call that was already past routing.
        activations = silo.catalog.by_partition().get(partition, [])
        await asyncio.gather(*(a.deactivate() for a in activations))
        await silo.ownership.release(partition)
        self.handoffs += 1

    async def stop(self) -> None:
        for task in list(self._waking):
            await cancel_and_wait(task)
        if self._task is not None:
            await cancel_and_wait(self._task)
