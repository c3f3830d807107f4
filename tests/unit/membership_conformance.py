"""The membership contract as tests: every backend's test module subclasses it.

A subclass sets ``LEASE`` (the lease, in seconds, that the tests grant) and provides two
fixtures: ``membership``, an opened, empty ``Membership``, and ``elapse``, an async
callable that lets the store's clock move on by at least the given number of seconds.
Tests only ever elapse multiples of ``LEASE``, so a backend on real time can keep it short.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import ClassVar

import pytest

from bayou.placement import Membership, SiloDeclaredDead, SiloStatus

Elapse = Callable[[float], Awaitable[None]]


async def status_of(membership: Membership, silo: str) -> SiloStatus | None:
    member = (await membership.read()).member(silo)
    return None if member is None else member.status


class MembershipConformance:
    """Contract tests shared by all membership backends."""

    LEASE: ClassVar[float]

    async def expire(self, elapse: Elapse) -> None:
        """Let every lease granted so far run out."""
        await elapse(self.LEASE * 1.5)

    # -- register --------------------------------------------------------------------------

    async def test_register_adds_a_joining_member(self, membership: Membership) -> None:
        member = await membership.register("s1", "10.0.0.1:8080", self.LEASE)
        assert member.silo == "s1"
        assert member.address == "10.0.0.1:8080"
        assert member.status is SiloStatus.JOINING
        assert member.lease_expires - member.registered_at == pytest.approx(self.LEASE, abs=1e-3)
        view = await membership.read()
        assert view.member("s1") == member
        assert view.now >= member.registered_at
        assert view.version == 1
        assert view.active() == []
        assert not view.is_dead("s1")

    async def test_register_retry_is_idempotent_but_identity_is_not_reusable(
        self, membership: Membership
    ) -> None:
        first = await membership.register("s1", "a:1", self.LEASE)
        again = await membership.register("s1", "a:1", self.LEASE)
        assert again.registered_at == first.registered_at
        assert again.lease_expires >= first.lease_expires
        assert await membership.version() == 1  # a retry is not a change
        with pytest.raises(ValueError, match="already registered"):
            await membership.register("s1", "b:2", self.LEASE)
        await membership.set_status("s1", SiloStatus.ACTIVE)
        with pytest.raises(ValueError, match="already registered"):
            await membership.register("s1", "a:1", self.LEASE)
        assert await status_of(membership, "s1") is SiloStatus.ACTIVE

    @pytest.mark.parametrize("lease", [0.0, -1.0, math.nan, math.inf])
    async def test_a_lease_must_be_positive_and_finite(
        self, membership: Membership, lease: float
    ) -> None:
        with pytest.raises(ValueError, match="lease"):
            await membership.register("s1", "a:1", lease)
        await membership.register("s1", "a:1", self.LEASE)
        with pytest.raises(ValueError, match="lease"):
            await membership.renew("s1", lease)

    # -- status ----------------------------------------------------------------------------

    async def test_version_bumps_on_every_status_change_and_only_then(
        self, membership: Membership
    ) -> None:
        assert await membership.version() == 0
        await membership.register("s1", "a:1", self.LEASE)
        assert await membership.version() == 1
        await membership.set_status("s1", SiloStatus.ACTIVE)
        assert await membership.version() == 2
        await membership.set_status("s1", SiloStatus.ACTIVE)  # no change, no bump
        await membership.renew("s1", self.LEASE)  # leases are not versioned
        assert await membership.version() == 2
        await membership.set_status("s1", SiloStatus.SHUTTING_DOWN)
        assert await membership.version() == 3
        await membership.set_status("s1", SiloStatus.DEAD)
        assert await membership.version() == 4
        assert (await membership.read()).version == 4

    async def test_status_only_moves_forward(self, membership: Membership) -> None:
        await membership.register("s1", "a:1", self.LEASE)
        await membership.set_status("s1", SiloStatus.ACTIVE)
        with pytest.raises(ValueError, match="cannot move back"):
            await membership.set_status("s1", SiloStatus.JOINING)
        await membership.set_status("s1", SiloStatus.SHUTTING_DOWN)
        for backwards in (SiloStatus.ACTIVE, SiloStatus.JOINING):
            with pytest.raises(ValueError, match="cannot move back"):
                await membership.set_status("s1", backwards)
        assert await status_of(membership, "s1") is SiloStatus.SHUTTING_DOWN
        assert await membership.version() == 3  # refused moves change nothing

    async def test_status_may_skip_ahead(self, membership: Membership) -> None:
        await membership.register("s1", "a:1", self.LEASE)
        await membership.set_status("s1", SiloStatus.SHUTTING_DOWN)
        assert await status_of(membership, "s1") is SiloStatus.SHUTTING_DOWN
        await membership.register("s2", "a:2", self.LEASE)
        await membership.set_status("s2", SiloStatus.DEAD)
        assert await status_of(membership, "s2") is SiloStatus.DEAD

    async def test_dead_is_final(self, membership: Membership) -> None:
        await membership.register("s1", "a:1", self.LEASE)
        await membership.set_status("s1", SiloStatus.DEAD)
        version = await membership.version()
        for status in SiloStatus:
            with pytest.raises(SiloDeclaredDead):
                await membership.set_status("s1", status)
        assert await membership.version() == version

    async def test_set_status_of_an_unknown_silo_is_dead(self, membership: Membership) -> None:
        with pytest.raises(SiloDeclaredDead):
            await membership.set_status("nobody", SiloStatus.ACTIVE)
        assert await membership.version() == 0

    # -- leases ----------------------------------------------------------------------------

    async def test_renew_extends_the_lease(self, membership: Membership, elapse: Elapse) -> None:
        member = await membership.register("s1", "a:1", self.LEASE)
        await elapse(self.LEASE * 0.6)
        expires = await membership.renew("s1", self.LEASE)
        assert expires > member.lease_expires
        view = await membership.read()
        assert view.member("s1").lease_expires == expires  # type: ignore[union-attr]
        assert expires == pytest.approx(view.now + self.LEASE, abs=self.LEASE * 0.5)
        # Past the original lease, but not the renewed one: still alive.
        await elapse(self.LEASE * 0.6)
        assert (await membership.read()).expired() == []
        assert not await membership.declare_dead("s1")
        await elapse(self.LEASE * 0.6)
        assert [m.silo for m in (await membership.read()).expired()] == ["s1"]

    async def test_an_expired_silo_may_renew_until_declared_dead(
        self, membership: Membership, elapse: Elapse
    ) -> None:
        await membership.register("s1", "a:1", self.LEASE)
        await self.expire(elapse)
        assert [m.silo for m in (await membership.read()).expired()] == ["s1"]
        await membership.renew("s1", self.LEASE)
        assert (await membership.read()).expired() == []
        assert not await membership.declare_dead("s1")
        assert await status_of(membership, "s1") is SiloStatus.JOINING

    async def test_renew_of_a_dead_or_unknown_silo_fails(self, membership: Membership) -> None:
        with pytest.raises(SiloDeclaredDead):
            await membership.renew("nobody", self.LEASE)
        await membership.register("s1", "a:1", self.LEASE)
        await membership.set_status("s1", SiloStatus.DEAD)
        with pytest.raises(SiloDeclaredDead):
            await membership.renew("s1", self.LEASE)

    # -- declare_dead ----------------------------------------------------------------------

    async def test_declare_dead_refuses_a_live_lease(self, membership: Membership) -> None:
        await membership.register("s1", "a:1", self.LEASE)
        await membership.set_status("s1", SiloStatus.ACTIVE)
        assert not await membership.declare_dead("s1")
        assert await status_of(membership, "s1") is SiloStatus.ACTIVE
        assert await membership.version() == 2
        assert not await membership.declare_dead("nobody")

    async def test_declare_dead_succeeds_exactly_once(
        self, membership: Membership, elapse: Elapse
    ) -> None:
        await membership.register("s1", "a:1", self.LEASE)
        await membership.set_status("s1", SiloStatus.ACTIVE)
        await membership.register("s2", "a:2", self.LEASE)
        await self.expire(elapse)
        await membership.renew("s2", self.LEASE)
        version = await membership.version()
        results = await asyncio.gather(*(membership.declare_dead("s1") for _ in range(10)))
        assert results.count(True) == 1, results
        assert await membership.version() == version + 1
        view = await membership.read()
        assert view.is_dead("s1")
        assert view.member("s1").status is SiloStatus.DEAD  # type: ignore[union-attr]
        assert not view.is_dead("s2")
        assert not await membership.declare_dead("s1")
        assert not await membership.declare_dead("s2")  # renewed: alive
        assert await membership.version() == version + 1

    async def test_a_dead_identity_never_comes_back(
        self, membership: Membership, elapse: Elapse
    ) -> None:
        await membership.register("left", "a:1", self.LEASE)
        await membership.set_status("left", SiloStatus.DEAD)
        await membership.register("crashed", "a:2", self.LEASE)
        await self.expire(elapse)
        assert await membership.declare_dead("crashed")
        for forgotten in (False, True):
            if forgotten:
                await membership.forget(["left", "crashed"])
                assert (await membership.read()).members == ()
            for silo in ("left", "crashed"):
                with pytest.raises(SiloDeclaredDead):
                    await membership.register(silo, "a:3", self.LEASE)
                with pytest.raises(SiloDeclaredDead):
                    await membership.renew(silo, self.LEASE)
                with pytest.raises(SiloDeclaredDead):
                    await membership.set_status(silo, SiloStatus.ACTIVE)
                assert not await membership.declare_dead(silo)
                assert (await membership.read()).is_dead(silo)

    # -- forget ----------------------------------------------------------------------------

    async def test_forget_drops_only_dead_records(self, membership: Membership) -> None:
        await membership.register("s1", "a:1", self.LEASE)
        await membership.register("s2", "a:2", self.LEASE)
        await membership.set_status("s1", SiloStatus.DEAD)
        version = await membership.version()
        await membership.forget([])
        await membership.forget(["s2", "nobody"])
        assert await membership.version() == version
        await membership.forget(["s1", "s2", "nobody"])
        view = await membership.read()
        assert [m.silo for m in view.members] == ["s2"]
        assert view.version == version + 1
        await membership.forget(["s1"])  # already gone
        assert await membership.version() == version + 1

    # -- views -----------------------------------------------------------------------------

    async def test_active_and_expired_views(self, membership: Membership, elapse: Elapse) -> None:
        for silo in ("a", "b", "c", "d"):
            await membership.register(silo, f"{silo}:1", self.LEASE)
        await membership.set_status("a", SiloStatus.ACTIVE)
        await membership.set_status("b", SiloStatus.ACTIVE)
        await membership.set_status("b", SiloStatus.SHUTTING_DOWN)
        await membership.set_status("d", SiloStatus.DEAD)
        view = await membership.read()
        assert [m.silo for m in view.members] == ["a", "b", "c", "d"]  # sorted by id
        assert [m.silo for m in view.active()] == ["a"]
        assert view.expired() == []
        assert [view.is_dead(s) for s in ("a", "b", "c", "d", "zz")] == [False] * 3 + [True] * 2

        await self.expire(elapse)
        await membership.renew("a", self.LEASE)
        view = await membership.read()
        assert [m.silo for m in view.expired()] == ["b", "c"]  # dead ones are not "expired"
        assert [m.silo for m in view.active()] == ["a"]  # expiry alone changes no status
        assert await membership.declare_dead("c")
        view = await membership.read()
        assert [m.silo for m in view.expired()] == ["b"]
        assert view.is_dead("c")

    async def test_read_is_one_consistent_snapshot(self, membership: Membership) -> None:
        # Every registration bumps the version once, so a consistent view taken while they
        # happen always holds exactly ``version`` members.
        async def register_all() -> None:
            for i in range(20):
                await membership.register(f"s{i:02}", f"h:{i}", self.LEASE)

        async def read_all() -> list[tuple[int, int]]:
            seen = []
            for _ in range(40):
                view = await membership.read()
                seen.append((view.version, len(view.members)))
                assert [m.silo for m in view.members] == sorted(m.silo for m in view.members)
                await asyncio.sleep(0)
            return seen

        _, seen = await asyncio.gather(register_all(), read_all())
        assert all(version == count for version, count in seen), seen
        view = await membership.read()
        assert view.version == await membership.version() == len(view.members) == 20

    async def test_agree_fixes_a_cluster_constant_once(self, membership: Membership) -> None:
        assert await membership.agree("partitions", "1024") == "1024"
        assert await membership.agree("partitions", "64") == "1024"
        assert await membership.agree("other", "x") == "x"
        assert (await membership.read()).version == 0  # constants are not membership changes
