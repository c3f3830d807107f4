"""A silo's background loops stop when asked, even when the cancellation that asks them
is turned into an ordinary error below them (a client library retrying, Python 3.11's
``wait_for`` returning a result that came in the same loop turn), which the loop survives
as it survives any failed poll. Found by the chaos suite: a silo declared dead while its
reminder poll waited on Redis never finished abandoning (``abandoning did not finish``,
waiting in ``ReminderService.stop`` on a poll loop back asleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from pydantic import BaseModel

from bayou import Actor, App, actor
from bayou.errors import StorageError
from bayou.storage import MemoryStorage
from bayou.storage.contract import Reminder
from bayou.tasks import cancel_and_wait
from bayou.testing import FakeClock, local_silo


class Nothing(BaseModel):
    pass


@actor("idle")
class Idle(Actor[Nothing]):
    async def ping(self) -> None:
        return None


class SwallowsOneCancel(MemoryStorage):
    """Memory storage whose reminder query, while ``stuck``, waits for an answer and turns
    a cancellation into a StorageError, as a client library retrying a read may."""

    stuck = False
    polls = 0

    async def reminders_due(
        self, partitions: Collection[int], until: float, limit: int = 1000
    ) -> list[Reminder]:
        self.polls += 1
        if self.stuck:
            self.stuck = False
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise StorageError("reminders_due failed: connection closed") from None
        return await super().reminders_due(partitions, until, limit)


async def test_the_reminder_poll_stops_though_its_cancellation_was_swallowed() -> None:
    clock = FakeClock()
    storage = SwallowsOneCancel()
    async with local_silo(App([Idle]), storage=storage, clock=clock) as silo:
        storage.stuck = True
        await clock.advance(1.5)  # the poll runs and waits on the store
        assert storage.polls == 1
        poll = silo.reminders._task
        assert poll is not None
        stopping = asyncio.ensure_future(silo.reminders.stop())
        # Not wait_for: it would cancel stop(), which swallowed that too and returned.
        await asyncio.wait({stopping}, timeout=2.0)
        assert stopping.done() and poll.done()


async def test_cancel_and_wait_does_not_swallow_the_callers_cancellation() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    stubborn = asyncio.ensure_future(forever())
    stopper = asyncio.ensure_future(cancel_and_wait(stubborn))
    await asyncio.sleep(0.01)
    assert stubborn.cancelled()
    await stopper
    outer = asyncio.ensure_future(cancel_and_wait(asyncio.ensure_future(forever())))
    await asyncio.sleep(0)
    outer.cancel()
    await asyncio.sleep(0.01)
    assert outer.cancelled()
