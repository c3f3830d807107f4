"""A counter: the smallest durable actor."""

from __future__ import annotations

from pydantic import BaseModel

from bayou import Actor, actor, query


class CounterState(BaseModel):
    value: int = 0


@actor("counter")
class Counter(Actor[CounterState]):
    """Adds are exclusive and journaled; reads are queries."""

    async def add(self, n: int) -> int:
        """Add ``n`` and return the new value."""
        self.state.value += n
        return self.state.value

    @query
    async def get(self) -> int:
        return self.state.value
