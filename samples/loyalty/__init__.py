"""A loyalty account that earns points: an update, a durable signal and a query."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from bayou import Actor, actor, query

GOLD_AT = 1000

Tier = Literal["member", "gold"]


class Account(BaseModel):
    points: int = 0
    visits: int = 0
    last_visit: str | None = None


@actor("loyalty")
class Loyalty(Actor[Account]):
    """``add`` answers with the tier; ``visit`` is meant to be told (fire and forget)."""

    async def add(self, n: int = Field(gt=0, le=1_000_000)) -> Tier:
        """Earn ``n`` points (a request/response update)."""
        self.state.points += n
        return self.tier()

    async def visit(self, store: str) -> None:
        """Record a visit; sent as a durable one-way tell by the till."""
        self.state.visits += 1
        self.state.last_visit = f"{store}@{self.ctx.now().isoformat()}"
        self.state.points += 5

    async def redeem(self, n: int = Field(gt=0)) -> int:
        """Spend points; refuses (and changes nothing) if the balance is short."""
        if n > self.state.points:
            raise ValueError(f"only {self.state.points} points, cannot redeem {n}")
        self.state.points -= n
        return self.state.points

    @query
    async def points(self) -> int:
        return self.state.points

    @query
    async def summary(self) -> Account:
        return self.state

    def tier(self) -> Tier:
        return "gold" if self.state.points >= GOLD_AT else "member"
