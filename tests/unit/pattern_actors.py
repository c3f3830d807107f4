"""Actors for the communication-pattern tests."""

from __future__ import annotations

import asyncio
import functools
import hashlib

from pydantic import BaseModel

from bayou import Actor, StatelessWorker, actor, query, stateless_worker, workflow


class Tally(BaseModel):
    total: int = 0
    seen: list[str] = []
    ticks: int = 0


@actor("sink")
class Sink(Actor[Tally]):
    """Receives tells; records every one it applies."""

    async def take(self, tag: str, n: int = 1) -> None:
        self.state.total += n
        self.state.seen.append(tag)

    @query
    async def read(self) -> Tally:
        return self.state


@actor("source")
class Source(Actor[Tally]):
    """Sends tells from its handlers: they leave only when the turn commits."""

    async def fan_out(self, count: int, sink: str = "s") -> int:
        for i in range(count):
            self.ref(Sink, sink).tell.take(f"{self.key}-{self.state.total}-{i}")
        self.state.total += count
        return self.state.total

    async def fan_out_then_fail(self, sink: str = "s") -> None:
        self.ref(Sink, sink).tell.take("never")
        raise ValueError("changed my mind")


@actor("ring-node")
class RingNode(Actor[Tally]):
    """Forwards a call along a chain of actors; a chain that loops is a deadlock."""

    async def relay(self, path: list[str]) -> str:
        if not path:
            return self.key
        reply: str = await self.ref(RingNode, path[0]).relay(path[1:])
        return f"{self.key}>{reply}"

    @query
    async def peek(self, via: str) -> int:
        state = await self.ref(Sink, via).read()
        return int(state["total"])


@actor("publisher")
class Publisher(Actor[Tally]):
    """Publishes events and streams."""

    async def progress(self, percent: int) -> None:
        self.ctx.set_event("progress", {"percent": percent})

    async def emit(self, words: list[str], close: bool = False) -> int:
        for word in words:
            self.ctx.write_stream("log", word)
        if close:
            self.ctx.close_stream("log")
        self.state.total += len(words)
        return self.state.total

    async def emit_then_fail(self) -> None:
        self.ctx.write_stream("log", "ghost")
        self.ctx.set_event("progress", {"percent": -1})
        raise RuntimeError("nope")

    async def start_ticking(self, every: float) -> None:
        self.set_timer("tick", every, self.tick, period=every)

    async def stop_ticking(self) -> bool:
        return self.cancel_timer("tick")

    async def tick(self) -> None:
        self.state.ticks += 1

    @query
    async def read(self) -> Tally:
        return self.state


class Alarms(BaseModel):
    rings: list[str] = []


@actor("alarm")
class Alarm(Actor[Alarms]):
    """Registers durable reminders; each ring is a turn."""

    async def arm(self, name: str, due_in: float, period: float | None = None) -> None:
        self.ctx.set_reminder(name, "ring", due_in=due_in, period=period, args={"label": name})

    async def disarm(self, name: str) -> None:
        self.ctx.cancel_reminder(name)

    async def ring(self, label: str) -> None:
        self.state.rings.append(f"{label}@{self.ctx.now().timestamp():.0f}")

    async def listing(self) -> list[dict[str, object]]:
        return await self.ctx.reminders()

    @query
    async def rings(self) -> list[str]:
        return self.state.rings


@stateless_worker("hasher", max_activations=3)
class Hasher(StatelessWorker):
    """Pure work, fanned out over local activations."""

    busy = 0
    peak = 0

    async def digest(self, text: str) -> str:
        Hasher.busy += 1
        Hasher.peak = max(Hasher.peak, Hasher.busy)
        try:
            await asyncio.sleep(0.01)
            return hashlib.sha256(text.encode()).hexdigest()[:12]
        finally:
            Hasher.busy -= 1


NOTIFIED: list[str] = []


@actor("approval")
class Approval(Actor[Tally]):
    """A workflow that publishes progress, waits for a decision, sleeps, and finishes."""

    @workflow
    async def review(self, doc: str) -> str:
        self.ctx.set_event("status", "waiting")
        self.ctx.write_stream("log", f"submitted {doc}")
        decision = await self.ctx.receive("decision", timeout=600)
        if decision is None:
            self.ctx.close_stream("log")
            return f"{doc}:expired"
        self.ctx.write_stream("log", f"decided {decision}")
        await self.ctx.sleep(30)
        await self.ctx.run("notify", lambda: NOTIFIED.append(f"{doc}:{decision}"))
        await self.ref(Approval, self.key).record(decision)
        self.ctx.set_event("status", decision)
        self.ctx.close_stream("log")
        return f"{doc}:{decision}"

    async def record(self, decision: str) -> int:
        self.state.seen.append(decision)
        return len(self.state.seen)

    @query
    async def read(self) -> Tally:
        return self.state


@actor("batch")
class Batch(Actor[Tally]):
    """Processes items in chunks, continuing as new after each chunk."""

    @workflow
    async def process(self, start: int, end: int, chunk: int) -> int:
        stop = min(end, start + chunk)
        for i in range(start, stop):
            await self.ctx.run(f"item-{i}", functools.partial(pow, i, 2))
        self.ctx.write_stream("progress", stop)
        if stop < end:
            self.ctx.continue_as_new(start=stop, end=end, chunk=chunk)
        return stop
