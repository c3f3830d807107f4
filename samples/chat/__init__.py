"""A chat conversation whose history grows one message at a time and stays fast.

An entity: each message is its own kv entry written atomically with the invocation, so
activating a conversation with 100,000 messages reads two keys, not the whole history.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from bayou import Entity, actor, query


class ChatMessage(BaseModel):
    n: int
    author: str
    text: str
    at: str


@actor("chat")
class Chat(Entity):
    """Post messages; read the count or the latest page."""

    async def post(
        self, author: str = Field(min_length=1, max_length=64), text: str = Field(max_length=4000)
    ) -> int:
        """Append a message and return its number (1-based)."""
        count: int = await self.ctx.kv.get("count", 0)
        count += 1
        message = ChatMessage(n=count, author=author, text=text, at=self.ctx.now().isoformat())
        self.ctx.kv.set(f"m:{count}", message.model_dump())
        self.ctx.kv.set("count", count)
        return count

    @query
    async def count(self) -> int:
        value: int = await self.ctx.kv.get("count", 0)
        return value

    @query
    async def history(self, last: int = Field(20, ge=1, le=200)) -> list[ChatMessage]:
        """The latest ``last`` messages, oldest first."""
        count: int = await self.ctx.kv.get("count", 0)
        keys = [f"m:{n}" for n in range(max(1, count - last + 1), count + 1)]
        found = await self.ctx.kv.get_many(keys)
        return [ChatMessage.model_validate(found[k]) for k in keys if k in found]
