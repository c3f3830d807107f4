"""``until`` (and ``ReplyWaits.until``, its deadlines behind one timer): a caller that
stops waiting for a turn (its deadline passed, or it was cancelled) leaves the turn
running, and its outcome is consumed rather than logged as "Task exception was never
retrieved" (seen in the chaos runs' silo logs, where HTTP requests are cancelled by clients
that gave up while an activation was loading)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from bayou.errors import CallTimeout, Unavailable
from bayou.runtime.dispatch import ReplyWaits, until


def waiter_of(kind: str) -> Any:
    if kind == "until":
        return until
    return ReplyWaits(asyncio.get_running_loop()).until


def unretrieved(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: seen.append(context))
    return seen


async def fails_later(gate: asyncio.Event) -> None:
    await gate.wait()
    raise Unavailable("partition 7 belongs to another silo now; retry")


@pytest.mark.parametrize("kind", ["until", "replies"])
@pytest.mark.parametrize("how", ["deadline", "cancelled"])
async def test_a_turn_nobody_waits_for_any_more_fails_quietly(how: str, kind: str) -> None:
    loop = asyncio.get_running_loop()
    seen = unretrieved(loop)
    gate = asyncio.Event()
    task = asyncio.ensure_future(fails_later(gate))
    deadline = loop.time() + (0.01 if how == "deadline" else 60.0)
    caller = asyncio.ensure_future(waiter_of(kind)(task, deadline))
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


@pytest.mark.parametrize("kind", ["until", "replies"])
async def test_a_reply_before_the_deadline_is_returned(kind: str) -> None:
    loop = asyncio.get_running_loop()
    wait = waiter_of(kind)
    fut: asyncio.Future[int] = loop.create_future()
    loop.call_later(0.01, fut.set_result, 7)
    assert await wait(fut, loop.time() + 5) == 7
    done: asyncio.Future[int] = loop.create_future()
    done.set_result(8)
    assert await wait(done, loop.time() - 1) == 8  # already done: no wait, no timeout


async def test_reply_waits_share_one_timer_and_keep_no_entry() -> None:
    loop = asyncio.get_running_loop()
    replies = ReplyWaits(loop)
    futures: list[asyncio.Future[int]] = [loop.create_future() for _ in range(50)]
    late: asyncio.Future[int] = loop.create_future()
    waits = [asyncio.ensure_future(replies.until(f, loop.time() + 30)) for f in futures]
    timing_out = asyncio.ensure_future(replies.until(late, loop.time() + 0.02))
    await asyncio.sleep(0)
    assert len(replies._deadlines) == 51
    for i, fut in enumerate(futures):
        fut.set_result(i)
    assert await asyncio.gather(*waits) == list(range(50))
    with pytest.raises(CallTimeout):
        await timing_out
    assert len(replies._deadlines) == 0
