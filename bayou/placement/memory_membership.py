"""Membership held in one process: for unit tests and for a silo running alone.

The store's clock is an injected ``Clock``, so tests expire leases with ``FakeClock``. No
method awaits anything before it has finished its change, so each one is atomic with
respect to other tasks, as a Redis script is with respect to other clients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from bayou.clock import Clock
from bayou.placement.membership import (
    Member,
    Membership,
    MembershipView,
    SiloDeclaredDead,
    SiloStatus,
    check_lease,
)


class MemoryMembership(Membership):
    """A ``Membership`` in dicts, with the same semantics as the Redis one."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or Clock()
        self._members: dict[str, Member] = {}
        # Tombstones: every identity ever declared dead, kept after ``forget`` so that it
        # can never come back.
        self._dead: set[str] = set()
        self._version = 0
        self._constants: dict[str, str] = {}

    def _live(self, silo: str) -> Member:
        """The record of a silo that is not dead, or ``SiloDeclaredDead``."""
        member = self._members.get(silo)
        if silo in self._dead or member is None or member.status is SiloStatus.DEAD:
            raise SiloDeclaredDead(silo)
        return member

    async def register(self, silo: str, address: str, lease: float) -> Member:
        check_lease(lease)
        if not silo:
            raise ValueError("a silo id cannot be empty")
        if silo in self._dead:
            raise SiloDeclaredDead(silo)
        now = self._clock.time()
        current = self._members.get(silo)
        if current is not None:
            if current.status is not SiloStatus.JOINING or current.address != address:
                raise ValueError(
                    f"silo {silo} is already registered ({current.status} at {current.address})"
                )
            renewed = dataclasses.replace(current, lease_expires=now + lease)
            self._members[silo] = renewed
            return renewed
        member = Member(silo, address, SiloStatus.JOINING, now + lease, now)
        self._members[silo] = member
        self._version += 1
        return member

    async def renew(self, silo: str, lease: float) -> float:
        check_lease(lease)
        member = self._live(silo)
        expires = self._clock.time() + lease
        self._members[silo] = dataclasses.replace(member, lease_expires=expires)
        return expires

    async def set_status(self, silo: str, status: SiloStatus) -> None:
        member = self._live(silo)
        if status.rank < member.status.rank:
            raise ValueError(f"silo {silo} cannot move back from {member.status} to {status}")
        if status is member.status:
            return
        self._members[silo] = dataclasses.replace(member, status=status)
        if status is SiloStatus.DEAD:
            self._dead.add(silo)
        self._version += 1

    async def declare_dead(self, silo: str) -> bool:
        member = self._members.get(silo)
        if silo in self._dead or member is None or member.status is SiloStatus.DEAD:
            return False
        if member.lease_expires >= self._clock.time():
            return False
        self._members[silo] = dataclasses.replace(member, status=SiloStatus.DEAD)
        self._dead.add(silo)
        self._version += 1
        return True

    async def read(self) -> MembershipView:
        members = tuple(sorted(self._members.values(), key=lambda m: m.silo))
        return MembershipView(self._version, members, self._clock.time())

    async def version(self) -> int:
        return self._version

    async def agree(self, name: str, value: str) -> str:
        return self._constants.setdefault(name, value)

    async def forget(self, silos: Iterable[str]) -> None:
        dropped = False
        for silo in set(silos):
            if silo in self._dead and self._members.pop(silo, None) is not None:
                dropped = True
        if dropped:
            self._version += 1
