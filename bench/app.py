"""The actors the benchmark calls: a counter, as small as a durable actor gets.

A silo serves them with ``bayou silo --app bench.app:app``; settings come from the
environment (``BAYOU_SNAPSHOT_EVERY`` and friends), as for any silo.
"""

from __future__ import annotations

from pydantic import BaseModel

from bayou import Actor, App, actor, query


class Tally(BaseModel):
    value: int = 0


@actor("counter")
class Counter(Actor[Tally]):
    """``add`` is exclusive and journaled; ``get`` is a query."""

    async def add(self, n: int) -> int:
        self.state.value += n
        return self.state.value

    @query
    async def get(self) -> int:
        return self.state.value


app = App([Counter])
