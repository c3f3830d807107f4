"""Routing: calls for actors owned elsewhere go to their owner over the silo-to-silo link.

Any silo accepts any call. A silo whose ring names another owner forwards the call (one
persistent, multiplexed link per silo pair) with a hop count; the receiving silo routes
again by its own ring, so a call crossing a ring change still lands, and ``max_hops``
stops a loop between two silos that disagree for a moment (the caller gets a retryable
503 and tries again once views converge).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bayou.errors import SiloUnreachable, Unavailable
from bayou.runtime.transport import LinkPool

if TYPE_CHECKING:
    from bayou.runtime.silo import Silo


class Router:
    """Forwards calls and tells to their owner, and serves the ones forwarded here."""

    def __init__(self, silo: Silo) -> None:
        self._silo = silo
        self.links = LinkPool()
        self.forwarded = 0  # calls this silo sent on to another
        self.received = 0  # calls another silo sent here

    async def forward(
        self,
        owner: str,
        op: str,
        type_name: str,
        key: str,
        method: str,
        args: dict[str, Any],
        idempotency_key: str | None,
        deadline: float,
        hops: int,
    ) -> Any:
        silo = self._silo
        if hops >= silo.settings.max_hops:
            raise Unavailable(
                f"{type_name}/{key} was forwarded {hops} times; the ring is changing, retry"
            )
        member = silo.agent.view.member(owner)
        if member is None:
            raise Unavailable(f"owner {owner} of {type_name}/{key} is unknown; retry")
        remaining = deadline - asyncio.get_running_loop().time()
        payload = {
            "op": op,
            "type": type_name,
            "key": key,
            "method": method,
            "args": args,
            "idem": idempotency_key,
            "timeout": remaining,
            "hops": hops + 1,
        }
        self.forwarded += 1
        try:
            return await self.links.request(member.address, payload, max(remaining, 0.001))
        except SiloUnreachable as exc:
            raise Unavailable(f"owner {owner} of {type_name}/{key} is unreachable: {exc}") from None

    async def serve(self, payload: Any) -> Any:
        """Handle one request that arrived over a link from another silo."""
        if not isinstance(payload, dict) or payload.get("op") not in ("call", "tell"):
            raise Unavailable("malformed forwarded request")
        self.received += 1
        silo = self._silo
        timeout = float(payload["timeout"]) if payload.get("timeout") else None
        if payload["op"] == "tell":
            return await silo.tell(
                payload["type"],
                payload["key"],
                payload["method"],
                payload["args"],
                message_id=payload.get("idem"),
                timeout=timeout,
                hops=int(payload["hops"]),
            )
        return await silo.call(
            payload["type"],
            payload["key"],
            payload["method"],
            payload["args"],
            idempotency_key=payload.get("idem"),
            timeout=timeout,
            hops=int(payload["hops"]),
        )

    async def close(self) -> None:
        await self.links.close()
