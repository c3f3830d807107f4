"""Durable reminders on one silo with a fake clock: they fire when due, once, through
passivation and crashes."""

from __future__ import annotations

from bayou import App, SiloSettings
from bayou.storage import MemoryStorage
from bayou.testing import FakeClock, local_silo
from tests.unit.pattern_actors import Alarm

START = 1_700_000_000.0
APP = App([Alarm], SiloSettings(idle_timeout=30, reminder_interval=1.0))


async def test_one_shot_and_periodic_reminders_fire_when_due() -> None:
    clock = FakeClock(START)
    async with local_silo(APP, clock=clock) as silo:
        await silo.call("alarm", "a", "arm", {"name": "once", "due_in": 5})
        await silo.call("alarm", "a", "arm", {"name": "every", "due_in": 10, "period": 10})
        await clock.advance(4)
        assert await silo.call("alarm", "a", "rings", {}) == []
        await clock.advance(32)  # t=36: once@5, every@10,20,30
        rings = await silo.call("alarm", "a", "rings", {})
        assert sorted(rings) == sorted(["once@1700000005", "every@1700000010",
                                        "every@1700000020", "every@1700000030"])  # fmt: skip
        listing = await silo.call("alarm", "a", "listing", {})
        assert [(r["name"], r["due"], r["period"]) for r in listing] == [
            ("every", START + 40, 10.0)
        ]
        await silo.call("alarm", "a", "disarm", {"name": "every"})
        await clock.advance(30)
        assert len(await silo.call("alarm", "a", "rings", {})) == 4
        assert await silo.call("alarm", "a", "listing", {}) == []


async def test_a_reminder_reactivates_a_passivated_actor() -> None:
    clock = FakeClock(START)
    async with local_silo(APP, clock=clock) as silo:
        await silo.call("alarm", "p", "arm", {"name": "later", "due_in": 120})
        await clock.advance(60)
        assert len(silo.catalog) == 0  # passivated after 30 s idle
        await clock.advance(70)
        assert await silo.call("alarm", "p", "rings", {}) == ["later@1700000120"]


async def test_a_reminder_due_during_an_outage_fires_once_after_recovery() -> None:
    clock = FakeClock(START)
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, clock=clock, stop=False) as silo:
        await silo.call("alarm", "c", "arm", {"name": "beat", "due_in": 10, "period": 10})
    # The silo is gone for 95 s: the reminder was due nine times meanwhile.
    await clock.advance(95)
    async with local_silo(APP, storage=storage, clock=clock) as silo:
        await clock.advance(2)
        assert await silo.call("alarm", "c", "rings", {}) == [
            "beat@1700000096"
        ]  # the first poll after start
        listing = await silo.call("alarm", "c", "listing", {})
        assert listing[0]["due"] == START + 100  # back on its period
        await clock.advance(10)
        assert len(await silo.call("alarm", "c", "rings", {})) == 2
