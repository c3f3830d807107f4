"""Journaled tells that had not gone out when their silo crashed are sent by the next owner
without waiting for the sender to be called again, and an activation is not passivated
while its tells are still on their way.

Found by tests/cluster/test_workflow_crash.py: a batch workflow that continues as new
commits the message that starts its next run as a tell to itself. A SIGKILL between that
commit and the tell's delivery left the next run in the journal of an actor nothing would
ever activate again: the job hung with no error (about one run in ten on a busy machine).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import BaseModel

from bayou import Actor, App, SiloSettings, actor, query
from bayou.errors import StorageError
from bayou.runtime.silo import Silo
from bayou.storage import MemoryStorage
from bayou.storage.contract import InboxPut
from bayou.testing import local_silo


class Tags(BaseModel):
    tags: list[str] = []


@actor("recovery-sink")
class Sink(Actor[Tags]):
    async def take(self, tag: str) -> None:
        self.state.tags.append(tag)

    @query
    async def read(self) -> list[str]:
        return self.state.tags


@actor("recovery-source")
class Source(Actor[Tags]):
    async def relay(self, tag: str, sink: str) -> None:
        self.ref(Sink, sink).tell.take(tag=tag)
        self.state.tags.append(tag)


APP = App([Sink, Source], SiloSettings(idle_timeout=0.3))


class TellsRefused(MemoryStorage):
    """Memory storage that cannot store tells while ``refusing``: the sender's outbox
    keeps trying, as it would while the receiver's partition changes hands."""

    refusing = False

    async def inbox_put_many(self, batch: Sequence[InboxPut]) -> list[bool | BaseException]:
        if self.refusing:
            raise StorageError("the receiver cannot store it yet")
        return await super().inbox_put_many(batch)


async def _sink_tags(silo: Silo, expected: list[str], seconds: float = 3.0) -> list[str]:
    tags: list[str] = []
    for _ in range(int(seconds / 0.05)):
        tags = await silo.call("recovery-sink", "k", "read", {})
        if tags == expected:
            break
        await asyncio.sleep(0.05)
    return tags


async def test_a_crash_before_delivery_leaves_the_tell_to_the_next_owner() -> None:
    storage = TellsRefused()
    async with local_silo(APP, storage=storage, stop=False) as silo:
        storage.refusing = True
        await silo.call("recovery-source", "s", "relay", {"tag": "t1", "sink": "k"})
        await asyncio.sleep(0.1)  # the outbox is trying, and failing
        partition = silo.catalog.actor_key("recovery-source", "s").partition
        assert await storage.outbox_actors([partition]) == [
            silo.catalog.actor_key("recovery-source", "s")
        ]
    # The silo is gone without a snapshot; nobody calls the source again.
    storage.refusing = False
    async with local_silo(APP, storage=storage) as silo:
        assert await _sink_tags(silo, ["t1"]) == ["t1"]
        assert silo.catalog.peek("recovery-source", "s") is not None  # woken to send it


async def test_no_passivation_while_tells_are_on_their_way() -> None:
    storage = TellsRefused()
    async with local_silo(APP, storage=storage) as silo:
        storage.refusing = True
        await silo.call("recovery-source", "s", "relay", {"tag": "t1", "sink": "k"})
        source = silo.catalog.actor_key("recovery-source", "s")
        await asyncio.sleep(1.0)  # three idle timeouts
        assert silo.catalog.peek("recovery-source", "s") is not None
        storage.refusing = False
        assert await _sink_tags(silo, ["t1"]) == ["t1"]
        for _ in range(60):  # now idle with nothing left to send: passivated, snapshotted
            if silo.catalog.peek("recovery-source", "s") is None:
                break
            await asyncio.sleep(0.05)
        assert silo.catalog.peek("recovery-source", "s") is None
        assert await storage.outbox_actors([source.partition]) == []
