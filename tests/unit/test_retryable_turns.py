"""A turn that fails with a retryable error (``Unavailable``: "a dependency is down") is not
recorded, and for a call the caller retries it. A tell, a reminder's ring or a workflow run
has no caller: the runtime itself must try again, without waiting for someone else to
touch the actor. Found by the chaos suite (tests/chaos), where the witness's Redis restarts
under the workload."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from bayou import Actor, App, Unavailable, actor, query, workflow
from bayou.runtime.silo import Silo
from bayou.testing import local_silo

FAILURES = {"left": 0}
FINISHED: list[str] = []


def fail_once() -> None:
    if FAILURES["left"] > 0:
        FAILURES["left"] -= 1
        raise Unavailable("a dependency is down for a moment")


@pytest.fixture(autouse=True)
def _one_failure() -> None:
    FAILURES["left"] = 1
    FINISHED.clear()


class Seen(BaseModel):
    tags: list[str] = []


@actor("flaky-sink")
class FlakySink(Actor[Seen]):
    async def take(self, tag: str) -> None:
        fail_once()
        self.state.tags.append(tag)

    @query
    async def read(self) -> list[str]:
        return self.state.tags


@actor("flaky-dependency")
class FlakyDependency(Actor[Seen]):
    async def work(self, tag: str) -> str:
        fail_once()
        return tag


@actor("flaky-flow")
class FlakyFlow(Actor[Seen]):
    @workflow
    async def flow(self, tag: str) -> str:
        got: str = await self.ref(FlakyDependency, "d").work(tag=tag)
        await self.ref(FlakyFlow, self.key).done(tag=got)
        return got

    async def done(self, tag: str) -> None:
        self.state.tags.append(tag)
        if not self.ctx.replaying:
            FINISHED.append(tag)  # seen without sending the actor anything


APP = App([FlakySink, FlakyDependency, FlakyFlow])


async def eventually_read(silo: Silo, type_name: str, want: int, seconds: float) -> list[str]:
    """The actor's tags once ``want`` are there, or what there is after ``seconds``."""
    tags: list[str] = []
    for _ in range(int(seconds / 0.05)):
        tags = await silo.call(type_name, "k", "read", {})
        if len(tags) >= want:
            break
        await asyncio.sleep(0.05)
    return tags


async def test_a_tell_whose_turn_failed_retryably_is_applied_later() -> None:
    async with local_silo(APP) as silo:
        await silo.tell("flaky-sink", "k", "take", {"tag": "first"}, message_id="m1")
        await silo.tell("flaky-sink", "k", "take", {"tag": "second"}, message_id="m2")
        # Sending the failed one again must not be a silent no-op either.
        await silo.tell("flaky-sink", "k", "take", {"tag": "first"}, message_id="m1")
        assert sorted(await eventually_read(silo, "flaky-sink", 2, 3.0)) == ["first", "second"]


async def test_a_call_whose_turn_failed_retryably_is_applied_on_retry() -> None:
    """The contrast: with a caller, the retry with the same key applies it once."""
    async with local_silo(APP) as silo:
        with pytest.raises(Unavailable):
            await silo.call("flaky-sink", "k", "take", {"tag": "x"}, idempotency_key="c1")
        await silo.call("flaky-sink", "k", "take", {"tag": "x"}, idempotency_key="c1")
        await silo.call("flaky-sink", "k", "take", {"tag": "x"}, idempotency_key="c1")
        assert await silo.call("flaky-sink", "k", "read", {}) == ["x"]


async def test_a_workflow_paused_by_a_retryable_error_resumes_by_itself() -> None:
    async with local_silo(APP) as silo:
        await silo.tell("flaky-flow", "k", "flow", {"tag": "t"}, message_id="run-1")
        for _ in range(60):  # no other message for flaky-flow/k meanwhile
            if FINISHED:
                break
            await asyncio.sleep(0.05)
        assert FINISHED == ["t"]
