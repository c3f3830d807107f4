"""MemoryMembership against the membership contract, on a FakeClock that tests move."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bayou.clock import FakeClock
from bayou.placement import Membership, MemoryMembership, SiloStatus
from tests.unit.membership_conformance import Elapse, MembershipConformance


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestMemory(MembershipConformance):
    LEASE = 30.0  # fake time: a long lease costs nothing

    @pytest.fixture
    async def membership(self, clock: FakeClock) -> AsyncIterator[Membership]:
        membership = MemoryMembership(clock)
        await membership.open()
        yield membership
        await membership.close()

    @pytest.fixture
    def elapse(self, clock: FakeClock) -> Elapse:
        return clock.advance


async def test_leases_follow_the_injected_clock_exactly(clock: FakeClock) -> None:
    membership = MemoryMembership(clock)
    member = await membership.register("s1", "a:1", 10.0)
    assert member.registered_at == clock.time()
    assert member.lease_expires == clock.time() + 10.0
    await clock.advance(10.0)
    # At the instant of expiry the lease still holds: expired means strictly past it.
    assert (await membership.read()).expired() == []
    assert not await membership.declare_dead("s1")
    await clock.advance(0.001)
    assert [m.silo for m in (await membership.read()).expired()] == ["s1"]
    assert await membership.renew("s1", 5.0) == clock.time() + 5.0
    assert (await membership.read()).now == clock.time()


async def test_without_a_clock_it_uses_real_time() -> None:
    membership = MemoryMembership()
    member = await membership.register("s1", "a:1", 60.0)
    view = await membership.read()
    assert member.registered_at <= view.now < member.lease_expires
    await membership.set_status("s1", SiloStatus.ACTIVE)
    assert [m.silo for m in (await membership.read()).active()] == ["s1"]
