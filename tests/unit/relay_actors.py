"""A source actor that relays tells to a sink, and a store that can refuse tells for a
while: what the outbox tests (drains, crashes before delivery) drive."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from bayou import Actor, actor, query
from bayou.errors import StorageError
from bayou.storage import MemoryStorage
from bayou.storage.contract import InboxPut


class Tags(BaseModel):
    tags: list[str] = []


@actor("relay-sink")
class RelaySink(Actor[Tags]):
    async def take(self, tag: str) -> None:
        self.state.tags.append(tag)

    @query
    async def read(self) -> list[str]:
        return self.state.tags


@actor("relay-source")
class RelaySource(Actor[Tags]):
    """Tells a sink from its handler: the tell leaves after the turn commits."""

    async def relay(self, tag: str, sink: str) -> None:
        self.ref(RelaySink, sink).tell.take(tag=tag)
        self.state.tags.append(tag)

    @query
    async def sent(self) -> list[str]:
        return self.state.tags


class TellsRefused(MemoryStorage):
    """Memory storage that cannot store tells while ``refusing`` (the receiver's partition
    is not claimable yet, say): the sender's outbox keeps retrying."""

    refusing = False

    async def inbox_put_many(self, batch: Sequence[InboxPut]) -> list[bool | BaseException]:
        if self.refusing:
            raise StorageError("the receiver cannot store it yet")
        return await super().inbox_put_many(batch)
