"""Actors for the reentrancy tests: call-chain reentrancy, always-interleave, full."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from bayou import Actor, actor, always_interleave, query

# Set by the tests: released to let a waiting handler go on; counts side effects.
GATES: dict[str, asyncio.Event] = {}
EFFECTS: list[str] = []


def gate(name: str) -> asyncio.Event:
    return GATES.setdefault(name, asyncio.Event())


class Log(BaseModel):
    entries: list[str] = []
    total: int = 0


@actor("chain-a", reentrancy="call_chain")
class ChainA(Actor[Log]):
    """Calls out through a bouncer that calls it back: a deadlock without reentrancy."""

    async def start(self, via: str, hold: str = "") -> list[str]:
        self.state.entries.append("start")
        await self.ref(Bouncer, via).bounce(back=self.key, hold=hold)
        self.state.entries.append("end")
        return self.state.entries

    async def echo(self, tag: str) -> int:
        self.state.entries.append(tag)
        return len(self.state.entries)

    @query
    async def read(self) -> list[str]:
        return self.state.entries


@actor("bouncer")
class Bouncer(Actor[Log]):
    async def bounce(self, back: str, hold: str = "") -> int:
        if hold:
            await gate(hold).wait()
        reply: int = await self.ref(ChainA, back).echo(tag="bounced")
        return reply


@actor("door")
class Door(Actor[Log]):
    """``wait_in`` waits for a gate that only ``knock`` opens: ``knock`` must interleave."""

    async def wait_in(self, name: str) -> list[str]:
        self.state.entries.append("waiting")
        await self.ref(Keeper, name).hold(name=name)
        self.state.entries.append("in")
        return self.state.entries

    @always_interleave
    async def knock(self, name: str) -> None:
        self.state.entries.append("knock")
        await self.ctx.run("open", lambda: gate(name).set())

    async def plain(self, tag: str) -> None:
        self.state.entries.append(tag)

    @query
    async def read(self) -> list[str]:
        return self.state.entries


@actor("keeper")
class Keeper(Actor[Log]):
    async def hold(self, name: str) -> None:
        await gate(name).wait()


@actor("tally-r", reentrancy="full")
class ReentrantTally(Actor[Log]):
    """Reads, awaits a side effect, then writes: interleaved turns would lose updates if
    each committed its own stale copy."""

    async def add_slowly(self, n: int) -> int:
        before = self.state.total

        async def effect() -> str:
            EFFECTS.append(f"{self.key}:{n}")
            await asyncio.sleep(0.001)
            return "done"

        done: str = await self.ctx.run("effect", effect)
        assert done == "done"
        self.state.total = before + n
        self.state.entries.append(str(n))
        return self.state.total

    async def note(self, tag: str) -> None:
        self.state.entries.append(tag)
        await asyncio.sleep(0)

    @query
    async def read(self) -> Log:
        return self.state
