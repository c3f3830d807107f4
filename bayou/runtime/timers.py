"""Timers: in-memory, per activation; each tick runs a handler as an ordinary turn.

Timers end with their activation and are not re-armed by replay; for wake-ups that must
survive passivation and crashes, use reminders. A tick does not count as activity, so an
actor whose only traffic is its own timer is still passivated when idle.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bayou.runtime.activation import Activation

log = logging.getLogger("bayou.timers")


class Timers:
    """The named timers of one activation."""

    def __init__(self, activation: Activation) -> None:
        self._activation = activation
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def names(self) -> list[str]:
        return sorted(name for name, task in self._tasks.items() if not task.done())

    def set(
        self, name: str, delay: float, method: str, args: dict[str, Any], period: float | None
    ) -> None:
        spec = self._activation.spec.handlers.get(method)
        if spec is None or spec.kind != "exclusive":
            raise ValueError(f"timer {name!r}: {method!r} is not an exclusive handler")
        if delay < 0 or (period is not None and period <= 0):
            raise ValueError(f"timer {name!r}: delay must be >= 0 and period > 0")
        self.cancel(name)
        self._tasks[name] = asyncio.get_running_loop().create_task(
            self._run(name, delay, method, args, period)
        )

    def cancel(self, name: str) -> bool:
        task = self._tasks.pop(name, None)
        if task is None:
            return False
        if task is not asyncio.current_task():
            task.cancel()
        return True

    def cancel_all(self) -> None:
        for name in list(self._tasks):
            self.cancel(name)

    async def _run(
        self, name: str, delay: float, method: str, args: dict[str, Any], period: float | None
    ) -> None:
        clock = self._activation.clock
        await clock.sleep(delay)
        while True:
            if not self._activation.post_timer_tick(method, args):
                return
            if period is None:
                self._tasks.pop(name, None)
                return
            await clock.sleep(period)
