"""A workflow run that is waiting when its activation is handed off (a drain, a scale-down,
a rolling restart) resumes on the next activation from the steps it had persisted: its
``ctx.run`` side effects are not done again. Found by the chaos suite (tests/chaos), where
runs failed with NonDeterminismError after a SIGTERM."""

from __future__ import annotations

import asyncio
import functools

from pydantic import BaseModel

from bayou import Actor, App, SiloSettings, actor, workflow
from bayou.storage import MemoryStorage
from bayou.testing import FakeClock, local_silo

EFFECTS: list[str] = []


def effect(i: int) -> int:
    """A side effect a run must do once: counted here."""
    EFFECTS.append(f"step-{i}")
    return i


class Nothing(BaseModel):
    pass


@actor("handed-off")
class HandedOff(Actor[Nothing]):
    @workflow
    async def flow(self) -> int:
        total = 0
        for i in range(3):
            total += await self.ctx.run(f"step-{i}", functools.partial(effect, i))
        await self.ctx.sleep(60)
        return total


APP = App([HandedOff], SiloSettings(snapshot_every=100))


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_waiting_run_resumes_after_a_crash_without_redoing_steps() -> None:
    """The contrast: a crash (no graceful hand-off) keeps the journal, and the run resumes."""
    EFFECTS.clear()
    clock = FakeClock()
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, clock=clock, stop=False) as silo:
        await silo.tell("handed-off", "k", "flow", {}, message_id="run-1")
        await settle()
    async with local_silo(APP, storage=storage, clock=clock) as silo:
        await settle()
        await clock.advance(61)
        await settle()
        runs = await silo.workflow_runs("handed-off", "k")
        assert [(r["run"], r["status"], r["result"]) for r in runs] == [("run-1", "completed", 3)]
    assert EFFECTS == ["step-0", "step-1", "step-2"]


async def test_a_waiting_run_resumes_after_a_graceful_handoff_without_redoing_steps() -> None:
    EFFECTS.clear()
    clock = FakeClock()
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, clock=clock) as silo:  # stopped gracefully
        await silo.tell("handed-off", "k", "flow", {}, message_id="run-1")
        await settle()
        assert EFFECTS == ["step-0", "step-1", "step-2"]  # persisted; now asleep
    async with local_silo(APP, storage=storage, clock=clock) as silo:
        await settle()
        await clock.advance(61)
        await settle()
        runs = await silo.workflow_runs("handed-off", "k")
        assert [(r["run"], r["status"], r["result"]) for r in runs] == [("run-1", "completed", 3)]
    assert EFFECTS == ["step-0", "step-1", "step-2"]  # not one of them done twice
