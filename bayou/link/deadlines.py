"""Many pending requests' deadlines behind one event-loop timer.

A timer per request costs more than the rest of a request's bookkeeping on the link's hot
path; one timer, never later than the earliest deadline, stands for them all. Both ends of
a link use it: the client side for its requests' timeouts, the server side for replies it
waits on without a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Deadlines(Generic[K, V]):
    """``key -> (loop-time deadline, value)``; ``on_late(key, value)`` runs for each entry
    whose deadline passed, after it was removed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_late: Callable[[K, V], None]) -> None:
        self._loop = loop
        self._on_late = on_late
        self._entries: dict[K, tuple[float, V]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def add(self, key: K, deadline: float, value: V) -> None:
        self._entries[key] = (deadline, value)
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)

    def pop(self, key: K) -> V | None:
        """The entry's value, removed; None if it is gone (or expired)."""
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._entries.clear()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        late = [(key, value) for key, (when, value) in self._entries.items() if when <= now]
        for key, _ in late:
            del self._entries[key]
        for key, value in late:
            self._on_late(key, value)
        if self._entries:
            self._arm(min(when for when, _ in self._entries.values()))
