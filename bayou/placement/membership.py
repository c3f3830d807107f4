"""Membership: which silos exist, their status, and the leases that prove they are alive.

A silo registers as ``joining``, becomes ``active``, then ``shutting_down`` when it drains,
and ends ``dead`` — by leaving, or because another silo saw its lease expire and declared
it dead. Dead is final: the identity never comes back (a restarted process registers as a
new silo). Lease times are read from the membership store's own clock, so silos with
skewed clocks still agree on who has expired.
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass


class SiloStatus(enum.StrEnum):
    JOINING = "joining"
    ACTIVE = "active"
    SHUTTING_DOWN = "shutting_down"
    DEAD = "dead"

    @property
    def rank(self) -> int:
        """Place in the one-way lifecycle (joining 0 ... dead 3): a status may only grow."""
        return LIFECYCLE.index(self)


# The lifecycle in order; the only direction a silo's status may move is rightwards.
LIFECYCLE: tuple[SiloStatus, ...] = tuple(SiloStatus)


@dataclass(frozen=True, slots=True)
class Member:
    """One silo as membership knows it. Times are the store's clock, in seconds."""

    silo: str
    address: str
    status: SiloStatus
    lease_expires: float
    registered_at: float


@dataclass(frozen=True, slots=True)
class MembershipView:
    """A consistent read of membership: ``version`` grows with every change of status.

    Consistent means taken at one instant: two views with the same version hold the same
    members with the same statuses (leases may differ: renewals do not bump the version).
    """

    version: int
    members: tuple[Member, ...]
    now: float  # the store's clock at the time of the read

    def member(self, silo: str) -> Member | None:
        for member in self.members:
            if member.silo == silo:
                return member
        return None

    def active(self) -> list[Member]:
        """Members that own partitions: status ``active`` (joining ones do not yet)."""
        return [m for m in self.members if m.status is SiloStatus.ACTIVE]

    def expired(self) -> list[Member]:
        """Members not yet declared dead whose lease has run out."""
        alive = (m for m in self.members if m.status is not SiloStatus.DEAD)
        return [m for m in alive if m.lease_expires < self.now]

    def is_dead(self, silo: str) -> bool:
        """Dead, or unknown to membership (a silo that never registered cannot be alive)."""
        member = self.member(silo)
        return member is None or member.status is SiloStatus.DEAD


def check_lease(lease: float) -> None:
    """Reject a lease no implementation can honour: it must be a positive, finite time."""
    if not math.isfinite(lease) or lease <= 0:
        raise ValueError(f"a lease must be a positive number of seconds, not {lease!r}")


class SiloDeclaredDead(Exception):
    """This silo's identity was declared dead: it must stop serving at once (fail-stop)."""


class Membership(abc.ABC):
    """The membership table of one cluster. Implementations: in-memory, Redis."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once before any other method."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abc.abstractmethod
    async def register(self, silo: str, address: str, lease: float) -> Member:
        """Add ``silo`` as ``joining`` with a lease of ``lease`` seconds; bumps the version.

        Raises ``SiloDeclaredDead`` if that identity was ever declared dead. Registering again
        while still ``joining`` at the same address is a retry: it renews the lease and
        returns the record without bumping the version; any other re-registration of a live
        identity is a ValueError.
        """

    @abc.abstractmethod
    async def renew(self, silo: str, lease: float) -> float:
        """Extend the lease to now + ``lease``; returns the new expiry (store clock).

        Raises ``SiloDeclaredDead`` if the silo is dead or unknown; a silo whose lease has
        expired but that nobody has declared dead yet may still renew.
        """

    @abc.abstractmethod
    async def set_status(self, silo: str, status: SiloStatus) -> None:
        """Move ``silo`` forward (joining → active → shutting_down → dead); bumps the version.

        Raises ``SiloDeclaredDead`` if it is already dead or unknown. Moving backwards is a
        ValueError; setting the status it already has changes nothing (a safe retry).
        Skipping ahead (joining → dead, to leave) is allowed.
        """

    @abc.abstractmethod
    async def declare_dead(self, silo: str) -> bool:
        """Declare ``silo`` dead if its lease has expired; atomic, so exactly one caller
        succeeds (True) and the rest see False. A live lease also gives False, and so does
        a silo that is unknown or already dead. Bumps the version when it succeeds."""

    @abc.abstractmethod
    async def read(self) -> MembershipView:
        """Every member (dead ones too, until ``forget``) sorted by silo id, the version and
        the store's time, all from one instant."""

    @abc.abstractmethod
    async def version(self) -> int:
        """The current version alone: a cheap way to poll for changes."""

    @abc.abstractmethod
    async def agree(self, name: str, value: str) -> str:
        """Record a cluster constant if it is not set yet; return the value in force.

        The first silo fixes it for the cluster's lifetime (e.g. the partition count), and
        every later silo compares: a silo that disagrees must refuse to start.
        """

    @abc.abstractmethod
    async def forget(self, silos: Iterable[str]) -> None:
        """Drop records of dead silos (housekeeping); their identities stay dead forever.

        Silos that are not dead are left alone. Bumps the version if a record was dropped.
        """
