"""Actors the unit tests drive; each one makes one behaviour observable."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from bayou import Actor, Entity, actor, query


class Trace(BaseModel):
    events: list[str] = []
    total: int = 0


# Observations made from outside the journal, reset by each test that reads them.
SIDE_EFFECTS: list[str] = []
GATES: dict[str, asyncio.Event] = {}
LIFECYCLE: list[str] = []


def gate(name: str) -> asyncio.Event:
    return GATES.setdefault(name, asyncio.Event())


@actor("recorder")
class Recorder(Actor[Trace]):
    """Logs the start and end of each turn so interleaving would be visible."""

    async def slow(self, tag: str, hold: str = "") -> list[str]:
        self.state.events.append(f"start:{tag}")
        if hold:
            await gate(hold).wait()
        else:
            await asyncio.sleep(0.001)
        self.state.events.append(f"end:{tag}")
        return list(self.state.events)

    async def add(self, n: int) -> int:
        self.state.total += n
        return self.state.total

    async def fail_after_add(self, n: int) -> int:
        self.state.total += n
        raise ValueError(f"refusing {n}")

    async def effect(self, name: str, hold: str = "") -> dict[str, Any]:
        """A side effect through ctx.run, plus recorded time and randomness."""

        def act() -> str:
            SIDE_EFFECTS.append(name)
            return f"done:{name}:{len(SIDE_EFFECTS)}"

        result = await self.ctx.run("effect", act)
        if hold:
            await gate(hold).wait()
        stamp = self.ctx.now().timestamp()
        draw = self.ctx.random().randint(0, 1_000_000)
        self.state.events.append(f"{result}|{stamp}|{draw}")
        self.state.total += 1
        return {"result": result, "stamp": stamp, "draw": draw}

    @query
    async def read(self) -> Trace:
        return self.state

    async def on_activate(self) -> None:
        LIFECYCLE.append(f"activate:{self.key}")

    async def on_deactivate(self) -> None:
        LIFECYCLE.append(f"deactivate:{self.key}")


@actor("ledger")
class Ledger(Entity):
    """An entity whose writes must land together with the record, or not at all."""

    async def put(self, k: str, v: int, fail: bool = False) -> int:
        self.ctx.kv.set(k, v)
        total: int = await self.ctx.kv.get("total", 0)
        self.ctx.kv.set("total", total + v)
        if fail:
            raise RuntimeError("boom")
        return total + v

    @query
    async def get(self, k: str) -> int | None:
        value: int | None = await self.ctx.kv.get(k)
        return value

    @query
    async def total(self) -> int:
        value: int = await self.ctx.kv.get("total", 0)
        return value


@actor("caller")
class Caller(Actor[Trace]):
    """Calls another actor from inside its handler."""

    async def forward(self, target: str, n: int) -> int:
        reply: int = await self.ref(Recorder, target).add(n)
        self.state.total = reply
        return reply

    @query
    async def read(self) -> Trace:
        return self.state

    async def self_call(self) -> int:
        reply: int = await self.ref(Caller, self.key).forward(self.key, 1)
        return reply
