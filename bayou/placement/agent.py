"""The membership agent: this silo's lease, its view of the cluster, and the ring it implies.

Every ``heartbeat`` seconds the agent renews the silo's lease, reads membership, declares
dead any member whose lease has expired (membership makes that atomic, so exactly one silo
wins), and rebuilds the partition ring whenever the set of active silos changes.

The silo may serve only while its lease is known to be valid. The agent keeps a *local*
deadline, taken from the monotonic clock when a renewal was *sent* and shortened by a safety
margin, so a silo that was frozen or cut off from the store notices by itself that its lease
may have run out, before anybody else could have taken its partitions over. It then refuses
calls until a renewal succeeds (nobody declared it dead: everything it holds is still its
own) or fails with "declared dead" (fail-stop: the silo stops serving for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bayou.clock import Clock
from bayou.errors import StorageError
from bayou.placement.membership import (
    Membership,
    MembershipView,
    SiloDeclaredDead,
    SiloStatus,
)
from bayou.placement.ring import PartitionRing
from bayou.tasks import cancel_and_wait

log = logging.getLogger("bayou.membership")

ViewListener = Callable[[MembershipView, PartitionRing], Awaitable[None]]
LossListener = Callable[[str], None]

# The share of the lease a silo trusts itself to hold: renewals that took long, and clocks
# running at slightly different rates, eat into the rest.
LEASE_SAFETY = 0.8


class MembershipAgent:
    """Keeps one silo registered, alive and informed; reports ring changes and lease loss."""

    def __init__(
        self,
        membership: Membership,
        silo: str,
        address: str,
        *,
        partitions: int,
        clock: Clock,
        lease: float,
        heartbeat: float,
        vnodes: int | None = None,
    ) -> None:
        self.membership = membership
        self.silo = silo
        self.address = address
        self.partitions = partitions
        self.clock = clock
        self.lease = lease
        self.heartbeat = heartbeat
        self._vnodes = vnodes
        self.view = MembershipView(version=0, members=(), now=0.0)
        self.ring = self._ring([])
        self._lease_deadline = 0.0
        self._unreachable = False
        self._reachable_since = clock.monotonic()  # membership answered us since then
        self._task: asyncio.Task[None] | None = None
        self._view_listeners: list[ViewListener] = []
        self._loss_listeners: list[LossListener] = []
        self.lost: str | None = None
        self.declared_dead = 0  # how many silos this agent declared dead
        # On-demand refreshes (see refresh_soon): the one running, and when one last ended.
        self._asked: asyncio.Future[None] | None = None
        self._asked_at = -1e9

    def _ring(self, silos: list[str]) -> PartitionRing:
        if self._vnodes is None:
            return PartitionRing(silos, self.partitions)
        return PartitionRing(silos, self.partitions, vnodes=self._vnodes)

    def on_view(self, listener: ViewListener) -> None:
        self._view_listeners.append(listener)

    def on_loss(self, listener: LossListener) -> None:
        self._loss_listeners.append(listener)

    # -- lease ---------------------------------------------------------------------------

    def lease_valid(self) -> bool:
        """Whether this silo may still act as an owner (serve turns, write)."""
        return self.lost is None and self.clock.monotonic() < self._lease_deadline

    def is_dead(self, silo: str) -> bool:
        return silo != self.silo and self.view.is_dead(silo)

    async def _renew(self) -> None:
        sent = self.clock.monotonic()
        try:
            await self.membership.renew(self.silo, self.lease)
        except StorageError:
            self._unreachable = True
            raise
        answered = self.clock.monotonic()
        if self._unreachable or answered >= self._lease_deadline:
            # Membership was out of reach, or answered only after our own lease had lapsed
            # (Redis stalled, this process frozen or starved of CPU): whatever kept us from
            # renewing may have kept the others from renewing too. ``refresh`` judges them
            # only once they have had a lease to catch up.
            self._unreachable = False
            self._reachable_since = answered
        self._lease_deadline = sent + self.lease * LEASE_SAFETY

    # -- lifecycle -----------------------------------------------------------------------

    async def join(self) -> None:
        """Register as ``joining`` and start heart-beating; the silo owns nothing yet."""
        sent = self.clock.monotonic()
        await self.membership.register(self.silo, self.address, self.lease)
        self._lease_deadline = sent + self.lease * LEASE_SAFETY
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._beat_forever())

    async def activate(self) -> None:
        """Enter the ring: other silos start routing this silo's partitions to it."""
        await self.membership.set_status(self.silo, SiloStatus.ACTIVE)
        await self.refresh()

    async def leave_ring(self) -> None:
        """Leave the ring but stay alive, to hand partitions off (the drain)."""
        await self.membership.set_status(self.silo, SiloStatus.SHUTTING_DOWN)
        await self.refresh()

    async def leave(self) -> None:
        """Stop heart-beating and mark this identity dead: the silo is gone for good."""
        await self._stop_beating()
        if self.lost is None:
            with contextlib.suppress(SiloDeclaredDead, StorageError):
                await self.membership.set_status(self.silo, SiloStatus.DEAD)

    async def stop(self) -> None:
        """Stop heart-beating without telling anyone (a crash, or after a loss)."""
        await self._stop_beating()

    async def _stop_beating(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    # -- the loop ------------------------------------------------------------------------

    async def _beat_forever(self) -> None:
        lapsed = False
        while self.lost is None:
            await self.clock.sleep(self.heartbeat)
            if not self.lease_valid() and not lapsed:
                # Frozen, or cut off from membership, for longer than the lease: another
                # silo may be taking our partitions. The silo refuses calls (lease_valid is
                # False) until a renewal proves that nobody declared it dead meanwhile.
                lapsed = True
                log.error("silo %s: lease lapsed; refusing calls until it is renewed", self.silo)
            try:
                await self._renew()
                await self.refresh()
            except SiloDeclaredDead:
                self._lose("declared dead by the cluster")
                return
            except StorageError as exc:
                log.warning(
                    "membership unreachable (%s); lease valid for %.1fs more",
                    exc,
                    self._lease_deadline - self.clock.monotonic(),
                )
                continue
            except Exception:
                log.exception("membership heartbeat failed; retrying")
                continue
            if lapsed:
                # Still a member in good standing: nobody can have taken over a partition
                # (that needs us declared dead first), so what we hold is still ours.
                lapsed = False
                log.warning("silo %s: lease renewed; serving again", self.silo)

    async def refresh_soon(self, min_interval: float = 0.1) -> None:
        """``refresh`` on demand (a forward found its owner gone). While the owner is only
        suspected, every call routed to it fails this way, hundreds a second: they share
        one refresh, and one that ended less than ``min_interval`` ago stands for a new
        one (membership cannot have much more to say yet)."""
        asked = self._asked
        if asked is None:
            if self.clock.monotonic() - self._asked_at < min_interval:
                return
            asked = self._asked = asyncio.ensure_future(self.refresh())
            asked.add_done_callback(self._refreshed_on_demand)
        await asyncio.shield(asked)

    def _refreshed_on_demand(self, done: asyncio.Future[None]) -> None:
        self._asked = None
        self._asked_at = self.clock.monotonic()
        if not done.cancelled():
            done.exception()  # each asker got it through its shield; none is left over

    async def refresh(self) -> None:
        """Read membership, declare expired members dead, and publish a changed ring."""
        view = await self.membership.read()
        declared = False
        # Right after membership became reachable again, or answered us late (or after
        # joining), every lease may have run out only because nobody could renew it: give
        # the others one lease to renew before judging them, or a Redis outage or stall
        # would take the whole cluster down.
        judging = self.clock.monotonic() - self._reachable_since >= self.lease
        for member in view.expired() if judging else ():
            if member.silo != self.silo and await self.membership.declare_dead(member.silo):
                log.warning("declared silo %s dead (lease expired)", member.silo)
                self.declared_dead += 1
                declared = True
        if declared:
            view = await self.membership.read()
        me = view.member(self.silo)
        if me is not None and me.status is SiloStatus.DEAD:
            raise SiloDeclaredDead(self.silo)
        if view.version == self.view.version and self.view.members:
            self.view = view
            return
        old_silos = self.ring.silos
        self.view = view
        active = sorted(m.silo for m in view.active())
        if tuple(active) != tuple(old_silos):
            self.ring = self._ring(active)
            log.info("ring v%d: %d active silos %s", view.version, len(active), active)
        for listener in self._view_listeners:
            await listener(view, self.ring)

    def _lose(self, reason: str) -> None:
        if self.lost is not None:
            return
        self.lost = reason
        log.error("silo %s stops serving: %s", self.silo, reason)
        for listener in self._loss_listeners:
            listener(reason)
