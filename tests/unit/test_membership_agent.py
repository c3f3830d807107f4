"""The membership agent's judgement: a silo declares a peer dead only when the peer could
have renewed its lease and did not, never because of a hiccup the judge shared.

A renewal that comes back after the judge's own lease lapsed (Redis stalled on a slow
fsync, the judge's process frozen or starved of CPU) says that whatever kept the judge
from renewing may have kept everyone from renewing. Found by the chaos suite: when a
stall held every silo's Redis traffic for a few seconds, whichever silo was answered
first declared the others dead, and a healthy cluster lost most of its silos."""

from __future__ import annotations

import asyncio

from bayou.clock import FakeClock
from bayou.placement.agent import MembershipAgent
from bayou.placement.membership import SiloStatus
from bayou.placement.memory_membership import MemoryMembership

LEASE, HEARTBEAT = 3.0, 0.5


class StallingMembership(MemoryMembership):
    """Memory membership whose renewals hang, without failing, while ``stalled``: a Redis
    busy on a long fsync answers everything late, and in the order it was asked."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.open_gate = asyncio.Event()
        self.open_gate.set()

    async def renew(self, silo: str, lease: float) -> float:
        await self.open_gate.wait()
        return await super().renew(silo, lease)


async def start(membership: MemoryMembership, clock: FakeClock, name: str) -> MembershipAgent:
    agent = MembershipAgent(
        membership, name, f"http://{name}", partitions=16, clock=clock, lease=LEASE,
        heartbeat=HEARTBEAT,
    )  # fmt: skip
    await agent.join()
    await agent.activate()
    return agent


async def test_a_stall_everyone_shared_declares_nobody_dead() -> None:
    clock = FakeClock()
    membership = StallingMembership(clock)
    agents = [await start(membership, clock, name) for name in ("a", "b", "c")]
    await clock.advance(LEASE + 1.0)  # past the time a new silo waits before judging
    membership.open_gate.clear()
    await clock.advance(LEASE + 2.0)  # every lease runs out, in Redis and locally
    assert not any(agent.lease_valid() for agent in agents)
    membership.open_gate.set()  # answered in turn: the first may judge before the others renew
    for _ in range(6):
        await clock.advance(HEARTBEAT)
    view = await membership.read()
    assert {m.silo: m.status for m in view.members} == dict.fromkeys("abc", SiloStatus.ACTIVE)
    assert [agent.lost for agent in agents] == [None, None, None]
    assert all(agent.lease_valid() for agent in agents)
    for agent in agents:
        await agent.stop()


async def test_a_peer_that_stays_silent_is_still_declared_dead_after_a_stall() -> None:
    """The contrast: the judge waits one lease after its hiccup, not for ever."""
    clock = FakeClock()
    membership = StallingMembership(clock)
    judge, silent = [await start(membership, clock, name) for name in ("judge", "silent")]
    await clock.advance(LEASE + 1.0)
    membership.open_gate.clear()
    await clock.advance(LEASE + 2.0)
    await silent.stop()  # it never renews again (killed during the stall)
    membership.open_gate.set()
    for _ in range(4 * int(LEASE / HEARTBEAT)):
        await clock.advance(HEARTBEAT)
    view = await membership.read()
    assert {m.silo: m.status for m in view.members} == {
        "judge": SiloStatus.ACTIVE,
        "silent": SiloStatus.DEAD,
    }
    assert judge.declared_dead == 1
    await judge.stop()
