"""Workflows: durable waits for messages and time, resumption after crashes, and
continue-as-new with archived lineage."""

from __future__ import annotations

import asyncio

import pytest

from bayou import App, SiloSettings
from bayou.storage import MemoryStorage
from bayou.testing import FakeClock, local_silo
from tests.unit.pattern_actors import NOTIFIED, Approval, Batch

APP = App([Approval, Batch], SiloSettings(idle_timeout=3600))


@pytest.fixture(autouse=True)
def _reset() -> None:
    NOTIFIED.clear()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_workflow_waits_for_a_message_and_time_then_finishes_once() -> None:
    clock = FakeClock()
    async with local_silo(APP, clock=clock) as silo:
        run = await silo.tell("approval", "a", "review", {"doc": "d1"}, message_id="run-1")
        assert run == "run-1"
        await settle()
        assert (await silo.get_event("approval", "a", "status", 0))["value"] == "waiting"
        # The actor's other messages run while the workflow waits.
        assert await silo.call("approval", "a", "record", {"decision": "warmup"}) == 1
        await silo.send_to_topic("approval", "a", "decision", "yes")
        await settle()
        await clock.advance(31)
        await settle()
        result = await silo.call("approval", "a", "review", {"doc": "d1"}, idempotency_key="run-1")
        assert result == "d1:yes"
        assert NOTIFIED == ["d1:yes"]
        assert (await silo.call("approval", "a", "read", {}))["seen"] == ["warmup", "yes"]
        log = await silo.read_stream("approval", "a", "log", after=-1)
        assert log == {
            "items": [[0, "submitted d1"], [1, "decided yes"]],
            "closed": True,
            "next": 2,
        }
        runs = await silo.workflow_runs("approval", "a")
        assert [(r["run"], r["status"], r["result"]) for r in runs] == [
            ("run-1", "completed", "d1:yes")
        ]


async def test_a_message_sent_before_the_workflow_waits_is_not_lost() -> None:
    clock = FakeClock()
    async with local_silo(APP, clock=clock) as silo:
        await silo.send_to_topic("approval", "early", "decision", "early-yes")
        call = asyncio.ensure_future(
            silo.call("approval", "early", "review", {"doc": "d"}, idempotency_key="r", timeout=60)
        )
        await settle()
        await clock.advance(31)
        assert await asyncio.wait_for(call, 5) == "d:early-yes"


async def test_a_workflow_resumes_after_crashes_while_waiting_and_asleep() -> None:
    clock = FakeClock()
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, clock=clock, stop=False) as silo:
        await silo.tell("approval", "c", "review", {"doc": "d2"}, message_id="run-c")
        await settle()
    # Crash while it waits for the decision; the decision arrives at the restarted silo.
    async with local_silo(APP, storage=storage, clock=clock, stop=False) as silo:
        await settle()
        await silo.send_to_topic("approval", "c", "decision", "no")
        await settle()
        await clock.advance(10)  # now asleep, 20 s to go
    # Crash while asleep: the restarted silo resumes the sleep where it was, not anew.
    async with local_silo(APP, storage=storage, clock=clock) as silo:
        await settle()
        await clock.advance(15)
        assert NOTIFIED == []
        await clock.advance(10)
        await settle()
        result = await silo.call("approval", "c", "review", {"doc": "d2"}, idempotency_key="run-c")
        assert result == "d2:no"
        assert NOTIFIED == ["d2:no"]
        log = await silo.read_stream("approval", "c", "log", after=-1)
        assert [item for _, item in log["items"]] == ["submitted d2", "decided no"]
        assert (await silo.call("approval", "c", "read", {}))["seen"] == ["no"]


async def test_continue_as_new_bounds_history_and_keeps_the_lineage() -> None:
    async with local_silo(APP) as silo:
        await silo.tell(
            "batch", "b", "process", {"start": 0, "end": 10, "chunk": 3}, message_id="r"
        )
        for _ in range(200):
            runs = await silo.workflow_runs("batch", "b")
            if runs and runs[-1]["status"] == "completed":
                break
            await asyncio.sleep(0.01)
        assert [(r["run"], r["status"]) for r in runs] == [
            ("r", "continued"),
            ("r~1", "continued"),
            ("r~2", "continued"),
            ("r~3", "completed"),
        ]
        assert [r.get("continued_from") for r in runs] == [None, "r", "r~1", "r~2"]
        assert [r.get("continued_to") for r in runs[:3]] == ["r~1", "r~2", "r~3"]
        assert runs[-1]["result"] == 10
        assert all(r["steps"] <= 3 for r in runs)  # each run's history stays small
        progress = await silo.read_stream("batch", "b", "progress", after=-1)
        assert [item for _, item in progress["items"]] == [3, 6, 9, 10]
