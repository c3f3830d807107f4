"""An approval workflow: publishes its progress, waits for a decision, streams its log.

``submit`` is a ``@workflow``: it survives silo crashes and hand-offs by replaying its own
steps, and while it waits for the decision the actor keeps answering other messages.
"""

from __future__ import annotations

from pydantic import BaseModel

from bayou import Actor, actor, query, workflow

DECISION_TOPIC = "decision"


class Ledger(BaseModel):
    approved: list[str] = []
    rejected: list[str] = []


@actor("approval")
class Approval(Actor[Ledger]):
    @workflow
    async def submit(self, document: str, wait_days: float = 7.0) -> str:
        """Ask for a decision on ``document``; ends "approved", "rejected" or "expired"."""
        self.ctx.set_event("status", {"document": document, "stage": "waiting"})
        self.ctx.write_stream("log", f"{document}: submitted for approval")
        decision = await self.ctx.receive(DECISION_TOPIC, timeout=wait_days * 86400)
        if decision is None:
            outcome = "expired"
        else:
            outcome = "approved" if decision.get("approve") else "rejected"
            reviewer = decision.get("by", "someone")
            self.ctx.write_stream("log", f"{document}: {outcome} by {reviewer}")
            # The state changes through an exclusive handler of this very actor: the
            # workflow lets go of the actor's turn while it waits for the reply.
            await self.ref(Approval, self.key).record(document, outcome == "approved")
        self.ctx.set_event("status", {"document": document, "stage": outcome})
        self.ctx.close_stream("log")
        return outcome

    async def record(self, document: str, approved: bool) -> None:
        (self.state.approved if approved else self.state.rejected).append(document)

    @query
    async def ledger(self) -> Ledger:
        return self.state
