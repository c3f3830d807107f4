"""The app the bad-input tests and the OpenAPI fuzzing run: handlers that never raise on
their own, over a spread of parameter types, so that any 5xx the fuzzer provokes is the
runtime's fault and not a handler's verdict."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from bayou import (
    Actor,
    App,
    Entity,
    SiloSettings,
    StatelessWorker,
    actor,
    query,
    stateless_worker,
    workflow,
)
from samples.counter import Counter

MAX_BODY = 64 * 1024


class Item(BaseModel):
    name: str
    quantity: int = Field(1, ge=1, le=1000)
    tags: list[str] = []


class Bag(BaseModel):
    total: int = 0
    notes: list[str] = []
    items: list[Item] = []
    meta: dict[str, Any] = {}
    score: float = 0.0


@actor("typed")
class Typed(Actor[Bag]):
    """Every argument is stored in the state, so it must survive the journal and snapshots."""

    async def add(self, n: int) -> int:
        self.state.total += n
        return self.state.total

    async def note(
        self,
        text: str,
        level: Literal["info", "warn"] = "info",
        flag: bool = False,
        score: float | None = None,
    ) -> int:
        self.state.notes.append(f"{level}:{flag}:{text}"[:200])
        self.ctx.set_event("last", text[:200])
        self.ctx.write_stream("notes", {"level": level, "text": text[:200]})
        if score is not None:
            self.state.score = score
        return len(self.state.notes)

    async def stock(self, item: Item, extra: tuple[Item, ...] = Field((), max_length=10)) -> int:
        self.state.items = [*self.state.items, item, *extra][-20:]
        return len(self.state.items)

    async def annotate(self, meta: dict[str, Any]) -> int:
        self.state.meta = meta
        return len(meta)

    async def bounded(
        self, n: int = Field(ge=0, le=100), s: str = Field(min_length=1, max_length=10)
    ) -> str:
        return f"{s}{n}"

    @query
    async def get(self) -> Bag:
        return self.state

    @workflow
    async def tally(self, upto: int = Field(3, ge=0, le=5)) -> int:
        total = 0
        for i in range(upto):
            total += await self.ctx.run(f"step{i}", lambda i=i: i)  # type: ignore[misc]
        return total


# What a kv key may be (the store refuses others, which would be the handler's fault).
Name = Annotated[str, Field(min_length=1, max_length=50, pattern="^[^\x01]")]


@actor("shelf")
class Shelf(Entity):
    """State in the K/V store: the routes that read state must work for entities too."""

    async def put(self, name: Name, count: int = Field(0, ge=0, le=1000)) -> int:
        self.ctx.kv.set(name, count)
        return count

    @query
    async def count(self, name: Name) -> int:
        value: int = await self.ctx.kv.get(name, 0)
        return value


@stateless_worker("echo", max_activations=2)
class Echo(StatelessWorker):
    """No state, no inbox: the actor-scoped routes must refuse it clearly, not fail."""

    async def say(self, text: str = Field(max_length=100)) -> str:
        return text


app = App(
    [Counter, Typed, Shelf, Echo],
    SiloSettings(max_body_bytes=MAX_BODY, body_timeout=3, call_timeout=5, snapshot_every=10),
)
