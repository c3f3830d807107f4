"""A batch job that processes items in chunks and continues as new after each chunk.

Each run handles ``chunk`` items as recorded steps, reports progress on a stream, then
``continue_as_new`` ends the run and starts the next one with a fresh, empty history:
a million-item job never builds a million-step history. The runs stay listed with their
lineage (``continued_from`` / ``continued_to``) at ``GET .../workflows``.
"""

from __future__ import annotations

import functools

from pydantic import BaseModel, Field

from bayou import Actor, actor, query, workflow


def work_on(item: int) -> int:
    """Stands for the real work on one item (a call to another system, say)."""
    return item * item % 9973


class Totals(BaseModel):
    processed: int = 0
    checksum: int = 0


@actor("batch")
class Batch(Actor[Totals]):
    @workflow
    async def run(
        self, start: int = Field(ge=0), end: int = Field(ge=0), chunk: int = Field(100, ge=1)
    ) -> int:
        stop = min(end, start + chunk)
        total = 0
        for item in range(start, stop):
            # A side effect per item, recorded: a resumed run never does an item twice.
            total += await self.ctx.run(f"item-{item}", functools.partial(work_on, item))
        await self.ref(Batch, self.key).account(stop - start, total)
        self.ctx.write_stream("progress", {"done": stop, "of": end})
        if stop < end:
            self.ctx.continue_as_new(start=stop, end=end, chunk=chunk)
        self.ctx.close_stream("progress")
        return stop

    async def account(self, items: int, checksum: int) -> int:
        self.state.processed += items
        self.state.checksum += checksum
        return self.state.processed

    @query
    async def totals(self) -> Totals:
        return self.state
