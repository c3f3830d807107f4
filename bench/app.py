"""The actors the benchmark calls: a counter, as small as a durable actor gets; a stream
writer (the ``streams`` scenario) and an alarm that reminders ring (``reminders``).

A silo serves them with ``bayou silo --app bench.app:app``; settings come from the
environment (``BAYOU_SNAPSHOT_EVERY`` and friends), as for any silo.
"""

from __future__ import annotations

import time

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


class Nothing(BaseModel):
    pass


@actor("streamer")
class Streamer(Actor[Nothing]):
    """One stream item per ``emit`` call, stamped with the wall-clock time it was written."""

    async def emit(self, stream: str, i: int) -> float:
        # time.time(), not ctx.now(): a reader in another process compares the stamp with
        # its own wall clock (one machine, one clock), and ctx.now() would also journal a
        # step. A replay never writes a committed item again, so the stamp never changes.
        written = time.time()
        self.ctx.write_stream(stream, {"i": i, "t": written})
        return written

    async def finish(self, stream: str) -> None:
        self.ctx.close_stream(stream)


class Rings(BaseModel):
    at: list[float] = []


@actor("alarm")
class Alarm(Actor[Rings]):
    """``ring`` is what the benchmark's reminders deliver; ``rings`` says when it ran."""

    async def ring(self) -> None:
        self.state.at.append(self.ctx.now().timestamp())

    @query
    async def rings(self) -> list[float]:
        return self.state.at


app = App([Counter, Streamer, Alarm])
