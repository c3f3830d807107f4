"""``until``: a caller that stops waiting for a turn (its deadline passed, or it was
cancelled) leaves the turn running, and its outcome is consumed rather than logged as "Task
exception was never retrieved" (seen in the chaos runs' silo logs, where HTTP requests are
cancelled by clients that gave up while an activation was loading)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from bayou.errors import CallTimeout, Unavailable
from bayou.runtime.dispatch import until


def unretrieved(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: seen.append(context))
    return seen


async def fails_later(gate: asyncio.Event) -> None:
    await gate.wait()
    raise Unavailable("partition 7 belongs to another silo now; retry")


@pytest.mark.parametrize("how", ["deadline", "cancelled"])
async def test_a_turn_nobody_waits_for_any_more_fails_quietly(how: str) -> None:
    loop = asyncio.get_running_loop()
    seen = unretrieved(loop)
    gate = asyncio.Event()
    task = asyncio.ensure_future(fails_later(gate))
    deadline = loop.time() + (0.01 if how == "deadline" else 60.0)
    caller = asyncio.ensure_future(until(task, deadline))
    await asyncio.sleep(0.02)
    if how == "cancelled":
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    else:
        with pytest.raises(CallTimeout):
            await caller
    assert not task.done()  # the turn was not cancelled with its caller
    gate.set()
    await asyncio.sleep(0.01)
    assert task.done()
    del task, caller
    gc.collect()
    assert seen == []
