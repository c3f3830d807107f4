"""Fail-stop: a silo declared dead stops serving and lets its process exit promptly, even
when dropping what it holds hangs (a store that never answers a write in flight). Found
by the chaos suite: a silo cut off from the cluster learnt at the heal that it had been
declared dead, and was still running 20 s later, serving nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bayou import App, SiloSettings
from bayou.placement.membership import SiloStatus
from bayou.placement.memory_membership import MemoryMembership
from bayou.runtime import silo as silo_module
from bayou.runtime.logs import awaiting
from bayou.runtime.silo import Silo
from bayou.storage import MemoryStorage
from bayou.storage.contract import Commit
from bayou.testing import FakeClock
from tests.unit.actors import Recorder


class HangingCommits(MemoryStorage):
    """Memory storage whose commits never come back once ``hang`` is set."""

    hang = False

    async def commit(self, batch: Sequence[Commit]) -> list[BaseException | None]:
        if self.hang:
            await asyncio.Event().wait()
        return await super().commit(batch)


async def test_a_silo_declared_dead_exits_though_a_write_in_flight_hangs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(silo_module, "ABANDON_BUDGET", 0.3)
    clock = FakeClock()
    membership = MemoryMembership(clock)
    storage = HangingCommits()
    app = App([Recorder], SiloSettings(lease=3.0, heartbeat_interval=0.5))
    silo = Silo(app, storage, membership=membership, clock=clock, port=0, silo_id="doomed")
    await silo.start(serve_http=False)
    assert await silo.call("recorder", "r", "add", {"n": 1}) == 1
    storage.hang = True
    in_flight = asyncio.ensure_future(silo.call("recorder", "r", "add", {"n": 1}))
    await asyncio.sleep(0.05)
    await membership.set_status("doomed", SiloStatus.DEAD)  # the cluster gave up on it
    await clock.advance(1.0)  # its next heartbeat learns it
    assert silo.agent.lost is not None
    await asyncio.wait_for(silo.failed.wait(), 5.0)  # the process may exit now
    assert "abandoning did not finish" in caplog.text
    assert "in close" in caplog.text  # where it hung: the commit it waited for
    in_flight.cancel()


async def test_awaiting_follows_a_chain_of_coroutines_and_tasks() -> None:
    gate = asyncio.Event()

    async def inner() -> None:
        await gate.wait()

    async def outer() -> None:
        await asyncio.ensure_future(inner())

    task = asyncio.ensure_future(outer())
    for _ in range(3):  # outer starts inner, inner starts waiting
        await asyncio.sleep(0)
    where = awaiting(task)
    assert where.index("in outer") < where.index("in inner") < where.index("in wait")
    assert "waiting for <Future pending" in where
    gate.set()
    await task
