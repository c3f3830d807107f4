"""A chat conversation as an actor: the whole history in memory, snapshotted.

The contrast with ``samples.chat`` (an entity with one kv entry per message): here the
state is one pydantic model, every ``post`` is a journaled turn, and a snapshot every
``snapshot_every`` records bounds what an activation replays, so a conversation with
10,000 messages reactivates by loading one snapshot and replaying at most a few records.
The price of an in-memory state: each turn works on a private copy of it (so a failed
turn changes nothing), which grows with the history; past a few thousand messages per
conversation, the entity version is the better fit.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from bayou import Actor, actor, query


class Line(BaseModel):
    author: str
    text: str


class Conversation(BaseModel):
    lines: list[Line] = []


@actor("chat-actor")
class ChatActor(Actor[Conversation]):
    async def post(
        self, author: str = Field(min_length=1, max_length=64), text: str = Field(max_length=4000)
    ) -> int:
        """Append a message; returns how many there are."""
        self.state.lines.append(Line(author=author, text=text))
        return len(self.state.lines)

    async def import_lines(self, lines: Annotated[list[Line], Field(max_length=1000)]) -> int:
        """Append a batch of messages (say, a conversation moved from elsewhere)."""
        self.state.lines.extend(lines)
        return len(self.state.lines)

    @query
    async def history(self, last: int = Field(20, ge=1, le=200)) -> list[Line]:
        return self.state.lines[-last:]

    @query
    async def count(self) -> int:
        return len(self.state.lines)
