"""On-demand membership refreshes: a storm of failed forwards costs one read, not one each."""

from __future__ import annotations

import asyncio

from bayou.clock import FakeClock
from bayou.placement import MemoryMembership
from bayou.placement.agent import MembershipAgent
from bayou.placement.membership import MembershipView


class CountingMembership(MemoryMembership):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.reads = 0

    async def read(self) -> MembershipView:
        self.reads += 1
        await asyncio.sleep(0.01)  # a round trip: askers arrive while it is on its way
        return await super().read()


async def test_concurrent_and_recent_asks_share_one_refresh() -> None:
    clock = FakeClock()
    membership = CountingMembership(clock)
    agent = MembershipAgent(
        membership, "s1", "http://s1", partitions=16, clock=clock, lease=3.0, heartbeat=0.5
    )
    await membership.register("s1", "http://s1", 3.0)
    await asyncio.gather(*(agent.refresh_soon() for _ in range(200)))
    assert membership.reads == 1
    await agent.refresh_soon()  # one ended a moment ago: nothing new to learn yet
    assert membership.reads == 1
    await clock.advance(0.2)
    await agent.refresh_soon()
    assert membership.reads == 2
