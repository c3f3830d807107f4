"""A hand-off (a drain, a scale-down) does not wait long for tells it cannot deliver yet:
their records stay in the journal and the actor's next activation sends them again, which
the receiver deduplicates. Found by the chaos suite: a silo handing its partitions off
held each batch of them ten seconds on a source actor whose tell went to a sink in a
partition the same silo was still to hand off (the sink's new owner waits for that
release, which waited for the source): a SIGTERM drained in 13 s instead of 2, and its
partitions answered nothing meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import BaseModel

from bayou import Actor, App, actor, query
from bayou.errors import StorageError
from bayou.storage import MemoryStorage
from bayou.storage.contract import InboxPut
from bayou.testing import local_silo


class Tags(BaseModel):
    tags: list[str] = []


@actor("drain-sink")
class DrainSink(Actor[Tags]):
    async def take(self, tag: str) -> None:
        self.state.tags.append(tag)

    @query
    async def read(self) -> list[str]:
        return self.state.tags


@actor("drain-source")
class DrainSource(Actor[Tags]):
    async def relay(self, tag: str, sink: str) -> None:
        self.ref(DrainSink, sink).tell.take(tag=tag)
        self.state.tags.append(tag)

    @query
    async def sent(self) -> list[str]:
        return self.state.tags


APP = App([DrainSink, DrainSource])


class TellsRefused(MemoryStorage):
    """Memory storage that cannot store tells while ``refusing`` (the receiver's partition
    is not claimable yet, say): the sender's outbox keeps retrying."""

    refusing = False

    async def inbox_put_many(self, batch: Sequence[InboxPut]) -> list[bool | BaseException]:
        if self.refusing:
            raise StorageError("the receiver cannot store it yet")
        return await super().inbox_put_many(batch)


async def test_a_drain_leaves_undelivered_tells_to_the_journal_without_waiting_long() -> None:
    storage = TellsRefused()
    loop = asyncio.get_running_loop()
    async with local_silo(APP, storage=storage) as silo:
        storage.refusing = True
        await silo.call("drain-source", "s", "relay", {"tag": "t1", "sink": "k"})
        await asyncio.sleep(0.2)  # the outbox is trying, and failing
        stopping = loop.time()
    assert loop.time() - stopping < 3.0  # the drain (leaving the context) was quick
    storage.refusing = False
    async with local_silo(APP, storage=storage) as silo:
        assert await silo.call("drain-source", "s", "sent", {}) == ["t1"]  # replayed
        tags: list[str] = []
        for _ in range(50):  # its tell leaves again from the journal
            tags = await silo.call("drain-sink", "k", "read", {})
            if tags:
                break
            await asyncio.sleep(0.05)
        assert tags == ["t1"]
