"""The app the cluster tests run in real silo processes: the samples plus a probe."""

from __future__ import annotations

import asyncio
import logging

from bayou import Actor, ActorBase, App, SiloSettings, actor
from samples.chat import Chat
from samples.counter import Counter, CounterState
from samples.loyalty import Loyalty
from tests.cluster.witness import Witness
from tests.unit.pattern_actors import Alarm, Publisher, RingNode, Sink, Source
from tests.unit.reentrant_actors import Bouncer, ChainA


@actor("probe")
class Probe(Actor[CounterState]):
    """Handlers that fail or stall on demand."""

    async def boom(self, message: str) -> None:
        raise LookupError(message)

    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    async def note(self, message: str) -> None:
        """Log a warning from inside a turn (the silo log must name the actor and turn)."""
        logging.getLogger("tests.probe").warning("note: %s", message)


ACTORS: list[type[ActorBase]] = [
    Counter,
    Loyalty,
    Chat,
    Probe,
    Witness,
    Alarm,
    Publisher,
    RingNode,
    Sink,
    Source,
]
app = App(
    [*ACTORS, ChainA, Bouncer],
    SiloSettings(snapshot_every=25, max_body_bytes=64 * 1024, call_timeout=10),
)
