"""A loyalty account that earns points: an update, a durable signal and a query."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from bayou import Actor, actor, query

GOLD_AT = 1000
MONTH = 30 * 24 * 3600.0  # points expire on a monthly reminder

Tier = Literal["member", "gold"]


class Account(BaseModel):
    points: int = 0
    visits: int = 0
    last_visit: str | None = None
    expired: int = 0
    expiry_armed: bool = False


@actor("loyalty")
class Loyalty(Actor[Account]):
    """``add`` answers with the tier; ``visit`` is meant to be told (fire and forget)."""

    async def add(self, n: int = Field(gt=0, le=1_000_000)) -> Tier:
        """Earn ``n`` points (a request/response update)."""
        self.state.points += n
        self._arm_expiry()
        return self.tier()

    async def expire(self) -> int:
        """The monthly reminder: points not spent within the month lapse."""
        lapsed, self.state.points = self.state.points, 0
        self.state.expired += lapsed
        return lapsed

    def _arm_expiry(self) -> None:
        # A durable reminder, registered once, committed with this turn: it survives
        # passivation and crashes and wakes the account every month.
        if not self.state.expiry_armed:
            self.ctx.set_reminder("expire-points", "expire", due_in=MONTH, period=MONTH)
            self.state.expiry_armed = True

    async def visit(self, store: str) -> None:
        """Record a visit; sent as a durable one-way tell by the till."""
        self.state.visits += 1
        self.state.last_visit = f"{store}@{self.ctx.now().isoformat()}"
        self.state.points += 5
        self._arm_expiry()

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
