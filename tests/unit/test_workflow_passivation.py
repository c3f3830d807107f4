"""A workflow that sleeps or waits for days does not keep its actor in memory: the actor is
passivated like any idle one, and a wake reminder (or the awaited message) brings it back
to finish the run, once."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from bayou import Actor, App, Silo, SiloSettings, actor, query, workflow
from bayou.storage import MemoryStorage
from bayou.testing import FakeClock, local_silo

START = 1_700_000_000.0
DAY = 7_200.0  # long enough to passivate; short enough for the fake clock to walk
WOKE: list[str] = []


class Naps(BaseModel):
    naps: int = 0


@actor("sleeper")
class Sleeper(Actor[Naps]):
    @workflow
    async def nap(self, seconds: float) -> str:
        await self.ctx.sleep(seconds)
        await self.ctx.run("woke", lambda: WOKE.append(self.key))
        await self.ctx.sleep(seconds)  # and once more: a second wake reminder
        await self.ctx.run("woke-again", lambda: WOKE.append(self.key))
        return "rested"

    @workflow
    async def wait_for(self, topic: str, timeout: float | None = None) -> str:
        got = await self.ctx.receive(topic, timeout=timeout)
        await self.ctx.run("got", lambda: WOKE.append(f"{self.key}:{got}"))
        return f"got {got}"

    async def poke(self) -> int:
        self.state.naps += 1
        return self.state.naps

    @query
    async def read(self) -> Naps:
        return self.state


APP = App([Sleeper], SiloSettings(idle_timeout=60, reminder_interval=30.0))


@pytest.fixture(autouse=True)
def _reset() -> None:
    WOKE.clear()


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


async def runs(silo: Silo, key: str) -> list[tuple[str, str]]:
    history = await silo.workflow_runs("sleeper", key)
    return [(r["run"], r["status"]) for r in history]


async def test_a_sleeping_workflow_is_passivated_and_woken_by_its_reminder() -> None:
    clock = FakeClock(START)
    async with local_silo(APP, clock=clock) as silo:
        await silo.tell("sleeper", "s", "nap", {"seconds": DAY}, message_id="run-s")
        await settle()
        assert silo.catalog.peek("sleeper", "s") is not None
        await clock.advance(120)  # idle for longer than idle_timeout
        assert silo.catalog.peek("sleeper", "s") is None  # passivated, though asleep
        # The wake-up is the runtime's own: not among the actor's reminders.
        assert await silo.reminder_admin("sleeper", "s", "list") == []
        await clock.advance(DAY)  # due: the reminder reactivates it and the run goes on
        await settle()
        assert WOKE == ["s"]
        await clock.advance(120)
        assert silo.catalog.peek("sleeper", "s") is None  # asleep again, passivated again
        await clock.advance(DAY + 30)
        await settle()
        assert WOKE == ["s", "s"]
        assert await runs(silo, "s") == [("run-s", "completed")]
        assert silo.catalog.metrics["passivations"] >= 2


async def test_a_workflow_waiting_for_a_message_is_passivated_and_the_message_wakes_it() -> None:
    clock = FakeClock(START)
    async with local_silo(APP, clock=clock) as silo:
        await silo.tell("sleeper", "w", "wait_for", {"topic": "go"}, message_id="run-w")
        await settle()
        await clock.advance(120)
        assert silo.catalog.peek("sleeper", "w") is None
        await silo.send_to_topic("sleeper", "w", "go", "now")
        await settle()
        assert WOKE == ["w:now"]
        assert await runs(silo, "w") == [("run-w", "completed")]


async def test_a_receive_deadline_wakes_a_passivated_workflow_and_a_message_cancels_it() -> None:
    clock = FakeClock(START)
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, clock=clock) as silo:
        await silo.tell(
            "sleeper", "d", "wait_for", {"topic": "go", "timeout": DAY}, message_id="run-d"
        )
        await silo.tell(
            "sleeper", "m", "wait_for", {"topic": "go", "timeout": DAY}, message_id="run-m"
        )
        await settle()
        await clock.advance(120)
        assert silo.catalog.peek("sleeper", "d") is None
        assert silo.catalog.peek("sleeper", "m") is None
        await silo.send_to_topic("sleeper", "m", "go", "early")
        await settle()
        m = silo.catalog.actor_key("sleeper", "m")
        assert await storage.reminders_of(m) == []  # the message made the wake-up moot
        await clock.advance(DAY)
        await settle()
        assert sorted(WOKE) == ["d:None", "m:early"]  # each run finished once
        d = silo.catalog.actor_key("sleeper", "d")
        assert await storage.reminders_of(d) == []  # fired, then removed


async def test_a_wake_reminder_survives_a_crash_while_passivated() -> None:
    clock = FakeClock(START)
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, clock=clock, stop=False) as silo:
        await silo.tell("sleeper", "c", "nap", {"seconds": DAY}, message_id="run-c")
        await settle()
        await clock.advance(120)
        assert silo.catalog.peek("sleeper", "c") is None
    await clock.advance(DAY)  # due while no silo runs
    async with local_silo(APP, storage=storage, clock=clock) as silo:
        await clock.advance(31)  # one reminder poll
        await settle()
        assert WOKE == ["c"]  # once, though both the inbox and the reminder woke it
        await clock.advance(DAY + 120)
        await settle()
        assert WOKE == ["c", "c"]
        assert await runs(silo, "c") == [("run-c", "completed")]


async def test_a_run_that_wakes_soon_or_has_a_waiting_caller_stays_in_memory() -> None:
    clock = FakeClock(START)
    async with local_silo(APP, clock=clock) as silo:
        await silo.tell("sleeper", "soon", "nap", {"seconds": 90}, message_id="run-soon")
        nap = {"seconds": DAY}
        waiting = asyncio.ensure_future(
            silo.call("sleeper", "caller", "nap", nap, idempotency_key="r", timeout=300)
        )
        await settle()
        await clock.advance(61)  # idle past idle_timeout; "soon" wakes in 29 s: not worth it
        assert silo.catalog.peek("sleeper", "soon") is not None
        assert silo.catalog.peek("sleeper", "caller") is not None  # its caller still waits
        waiting.cancel()
