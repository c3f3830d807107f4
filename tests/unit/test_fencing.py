"""Fencing: a silo that lost its partitions (frozen past its lease, declared dead) can never
write again, whatever it still believes. Two in-process silos share one store and one
membership; the clock is a fake one, so the lease runs out exactly when we say."""

from __future__ import annotations

import pytest

from bayou import App, SiloSettings, Unavailable
from bayou.errors import ConfigurationError, StorageError
from bayou.placement.membership import MembershipView
from bayou.placement.memory_membership import MemoryMembership
from bayou.runtime.activation import Message
from bayou.runtime.silo import Silo
from bayou.storage import MemoryStorage
from bayou.testing import FakeClock
from tests.unit.actors import Recorder


async def test_a_stale_owner_is_fenced_after_takeover() -> None:
    clock = FakeClock()
    storage = MemoryStorage()
    membership = MemoryMembership(clock)
    settings = SiloSettings(lease=3.0, heartbeat_interval=0.5, idle_timeout=3600)
    app = App([Recorder], settings)
    old = Silo(app, storage, membership=membership, clock=clock, port=0, silo_id="old")
    await old.start(serve_http=False)
    spec = app.actors["recorder"]
    stale = await old.catalog.get(spec, "x")
    assert await stale.call(Message("add", {"n": 1})) == 1

    # The old silo freezes: it stops renewing its lease but keeps its activation in memory.
    await old.agent.stop()
    new = Silo(app, storage, membership=membership, clock=clock, port=0, silo_id="new")
    await new.start(serve_http=False)
    await clock.advance(5.0)  # past the old lease: the new silo declares it dead
    assert membership_status(await membership.read(), "old") == "dead"
    assert new.agent.ring.silos == ("new",)

    # The new owner takes the partition over (epoch bump) and serves the actor.
    assert await new.call("recorder", "x", "add", {"n": 10}) == 11
    assert new.ownership.takeovers == 1

    # The zombie knows its lease lapsed, so it starts no turn it had queued...
    with pytest.raises(Unavailable, match="lease"):
        await stale.call(Message("add", {"n": 100}))
    assert old.catalog.fenced_writes == 0
    # ...and even a zombie that wrongly believes it still holds its lease (a clock that
    # ran slow, say) cannot write: storage rejects the stale epoch and the activation goes.
    old.catalog.lease_ok = lambda: True  # type: ignore[method-assign]
    with pytest.raises(Unavailable, match="moved"):
        await stale.call(Message("add", {"n": 100}))
    assert old.catalog.fenced_writes == 1
    assert stale.status == "closed"
    # Nor may it start anything new: its lease is gone.
    assert not old.agent.lease_valid()
    with pytest.raises(Unavailable):
        await old.call("recorder", "y", "add", {"n": 1})
    assert await new.call("recorder", "x", "read", {}) == {"events": [], "total": 11}
    await new.stop()


def membership_status(view: MembershipView, silo: str) -> str:
    member = view.member(silo)
    return str(member.status) if member is not None else "unknown"


async def test_a_silo_with_another_partition_count_refuses_to_join() -> None:
    membership = MemoryMembership()
    storage = MemoryStorage()
    first = Silo(App([Recorder], SiloSettings(partitions=64)), storage, membership=membership)
    await first.start(serve_http=False)
    second = Silo(App([Recorder], SiloSettings(partitions=128)), storage, membership=membership)
    with pytest.raises(ConfigurationError, match="64 partitions"):
        await second.start(serve_http=False)
    await first.stop()


class Unreachable(MemoryMembership):
    """Membership that can be cut off: every call fails while ``down`` is set."""

    down = False

    async def renew(self, silo: str, lease: float) -> float:
        if self.down:
            raise StorageError("membership unreachable")
        return await super().renew(silo, lease)


async def test_a_silo_cut_off_from_membership_pauses_then_resumes() -> None:
    clock = FakeClock()
    membership = Unreachable(clock)
    app = App([Recorder], SiloSettings(lease=3.0, heartbeat_interval=0.5))
    silo = Silo(app, MemoryStorage(), membership=membership, clock=clock, port=0)
    await silo.start(serve_http=False)
    assert await silo.call("recorder", "r", "add", {"n": 1}) == 1
    membership.down = True
    await clock.advance(3.0)  # past 80% of the lease without a renewal
    assert not silo.agent.lease_valid()
    with pytest.raises(Unavailable, match="lease"):
        await silo.call("recorder", "r", "add", {"n": 1})
    # Nobody declared it dead meanwhile, so once membership answers it serves again, with
    # its activations intact.
    membership.down = False
    await clock.advance(1.0)
    assert silo.agent.lease_valid() and silo.agent.lost is None
    assert await silo.call("recorder", "r", "add", {"n": 1}) == 2
    await silo.stop()
