"""A tell stored in an actor's inbox runs without another message for that actor, even when
storage fails at the wrong moment: while a new owner looks for the inboxes it inherited
from a crashed silo, or under the turn itself (the activation closes to reload, and what
waited in its mailbox is still in the inbox). Found in the chaos runs' logs ("could not
activate ... to drain its inbox"): the runs' final reads activated every actor, which
hid it.

Each test waits on the side effects of the turns alone, never calling the actor: a call
would activate it and so run its inbox, hiding the bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import pytest
from pydantic import BaseModel

from bayou import Actor, App, actor, query
from bayou.errors import StorageError
from bayou.storage import MemoryStorage
from bayou.storage.contract import ActorKey, Commit
from bayou.testing import FakeClock, local_silo

APPLIED: list[str] = []
GATE: dict[str, asyncio.Event] = {}


class Seen(BaseModel):
    tags: list[str] = []


@actor("patient-sink")
class PatientSink(Actor[Seen]):
    async def take(self, tag: str) -> None:
        if tag in GATE:
            await GATE[tag].wait()
        self.state.tags.append(tag)
        if not self.ctx.replaying:
            APPLIED.append(tag)

    @query
    async def read(self) -> list[str]:
        return self.state.tags


APP = App([PatientSink])


@pytest.fixture(autouse=True)
def _reset() -> None:
    APPLIED.clear()
    GATE.clear()


class FlakyStorage(MemoryStorage):
    """Memory storage whose next few inbox scans or commits fail as a Redis outage would."""

    def __init__(self) -> None:
        super().__init__()
        self.failing_scans = 0
        self.failing_commits = 0

    async def inbox_actors(self, partitions: Collection[int]) -> list[ActorKey]:
        if self.failing_scans:
            self.failing_scans -= 1
            raise StorageError("storage unreachable (inbox scan)")
        return await super().inbox_actors(partitions)

    async def commit(self, batch: Sequence[Commit]) -> list[BaseException | None]:
        if self.failing_commits:
            self.failing_commits -= 1
            raise StorageError("storage unreachable (commit)")
        return await super().commit(batch)


async def applied(clock: FakeClock, want: set[str], seconds: float = 30.0) -> set[str]:
    """The tags turns ran for, once ``want`` are among them or ``seconds`` (fake) passed."""
    for _ in range(int(seconds / 0.5)):
        if want <= set(APPLIED):
            break
        await clock.advance(0.5)
    return set(APPLIED)


async def test_the_inbox_of_a_crashed_silo_runs_though_the_first_scan_failed() -> None:
    clock = FakeClock()
    storage = FlakyStorage()
    GATE["t1"] = asyncio.Event()  # the first turn is under way when the silo dies
    async with local_silo(APP, storage=storage, clock=clock, stop=False) as silo:
        await silo.tell("patient-sink", "k", "take", {"tag": "t1"}, message_id="m1")
        await silo.tell("patient-sink", "k", "take", {"tag": "t2"}, message_id="m2")
    GATE["t1"].set()
    storage.failing_scans = 2  # Redis restarting while the next owner starts
    async with local_silo(APP, storage=storage, clock=clock):
        assert await applied(clock, {"t1", "t2"}) == {"t1", "t2"}


async def test_tells_queued_behind_a_failed_commit_run_without_another_message() -> None:
    clock = FakeClock()
    storage = FlakyStorage()
    async with local_silo(APP, storage=storage, clock=clock) as silo:
        GATE["t1"] = asyncio.Event()
        await silo.tell("patient-sink", "k", "take", {"tag": "t1"}, message_id="m1")
        await silo.tell("patient-sink", "k", "take", {"tag": "t2"}, message_id="m2")
        await silo.tell("patient-sink", "k", "take", {"tag": "t3"}, message_id="m3")
        storage.failing_commits = 1  # t1's commit: the activation closes to reload
        GATE["t1"].set()
        assert await applied(clock, {"t1", "t2", "t3"}) == {"t1", "t2", "t3"}
        # Once each in the state, though t1's turn ran twice (its first commit failed).
        assert await silo.call("patient-sink", "k", "read", {}) == ["t1", "t2", "t3"]
