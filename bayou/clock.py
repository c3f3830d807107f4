"""Time, injectable: every lease, idle timeout and ``ctx.now()`` reads a ``Clock``.

Tests use ``FakeClock``, which only moves when told to, so a 5-minute idle timeout is
tested in milliseconds and never flakes on a slow machine.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time as _time


class Clock:
    """The real clock: wall time for timestamps, monotonic time for durations.

    ``time()``: seconds since the epoch (wall clock), what ``ctx.now()`` records.
    ``monotonic()``: seconds from an arbitrary origin, never going backwards.
    """

    # The builtins themselves: a turn reads the clock several times, and a Python method
    # around each reading cost more than the reading.
    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock(Clock):
    """A clock that stands still until ``advance`` moves it; sleepers wake as it passes them."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._origin = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._origin

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._ids), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline is passed, in order."""
        # Let tasks that were just created reach their first sleep, so they are woken too.
        for _ in range(5):
            await asyncio.sleep(0)
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
            # Let the woken task run before waking the next, as real time would.
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)
