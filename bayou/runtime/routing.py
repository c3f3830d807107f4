"""Routing: requests for actors owned elsewhere go to their owner over the silo-to-silo link.

Any silo accepts any request. A silo whose ring names another owner forwards it (one
persistent, multiplexed link per silo pair) with a hop count; the receiving silo routes
again by its own ring, so a request crossing a ring change still lands, and ``max_hops``
stops a loop between two silos that disagree for a moment (the caller gets a retryable
503 and tries again once views converge).

Forwarded requests are msgpack maps: ``{"op", "type", "key", "hops", "timeout", ...}``
with, per op: ``call``/``tell`` — ``method, args, idem, chain``; ``event`` — ``name,
wait``; ``stream`` — ``name, after, limit, wait``; ``reminders`` — ``action, name,
request``; ``inspect`` — ``activate``. ``{"op": "stats"}`` names no actor: it asks the
silo at the other end for its own figures (the dashboard's).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bayou.errors import BadRequest, SiloUnreachable, Unavailable
from bayou.runtime.dashboard import STATS_OP, local_stats
from bayou.runtime.introspection import INSPECT_OP, inspect_actor
from bayou.runtime.transport import LinkPool
from bayou.wire import IDEMPOTENCY_KEY, bearer, check_nesting, key_problem

if TYPE_CHECKING:
    from bayou.runtime.silo import Silo

OPS = frozenset({"call", "tell", "event", "stream", "reminders", INSPECT_OP, STATS_OP})


class Router:
    """Forwards requests to their owner, and serves the ones forwarded here."""

    def __init__(self, silo: Silo) -> None:
        self._silo = silo
        self.links = LinkPool(headers=bearer(silo.secret) if silo.secret else None)
        self.forwarded = 0  # requests this silo sent on to another
        self.received = 0  # requests another silo forwarded here
        self.client_requests = 0  # requests clients sent over the link (the fast path)

    async def forward(self, owner: str, payload: dict[str, Any], deadline: float, hops: int) -> Any:
        silo = self._silo
        what = f"{payload['type']}/{payload['key']}"
        if hops >= silo.settings.max_hops:
            raise Unavailable(f"{what} was forwarded {hops} times; the ring is changing, retry")
        member = silo.agent.view.member(owner)
        if member is None:
            raise Unavailable(f"owner {owner} of {what} is unknown; retry")
        remaining = deadline - asyncio.get_running_loop().time()
        payload["timeout"] = remaining
        payload["hops"] = hops + 1
        self.forwarded += 1
        try:
            return await self.links.request(member.address, payload, max(remaining, 0.001))
        except SiloUnreachable as exc:
            failure = exc
        # The owner may have just left (drained, or crashed and been declared dead): read
        # membership now rather than at the next heartbeat, and route once more if the
        # ring moved.
        try:
            await silo.agent.refresh_soon()
        except Exception:  # membership unreachable too: the caller retries later
            moved_to = None
        else:
            partition = silo.catalog.actor_key(str(payload["type"]), str(payload["key"])).partition
            moved_to = silo.agent.ring.owner(partition)
        if moved_to is None or moved_to == owner:
            raise Unavailable(f"owner {owner} of {what} is unreachable: {failure}") from None
        if moved_to == silo.silo_id:
            return await self.serve({**payload, "hops": hops + 1})
        return await self.forward(moved_to, payload, deadline, hops + 1)

    def serve_nowait(self, payload: Any) -> tuple[asyncio.Future[Any], float] | None:
        """The fast path of ``serve`` (``LinkServer``'s ``fast``): a call, query or tell of
        an actor active here, taken without a task of the link's; its reply's future and
        deadline. None when the request needs ``serve`` (any other op, an actor to load or
        to forward to)."""
        if type(payload) is not dict:
            return None
        op = payload.get("op")
        if op != "call" and op != "tell":
            return None
        try:
            type_name, key, idem, hops, timeout = self._checked(payload)
            method, args = str(payload["method"]), payload.get("args") or {}
            if not isinstance(args, dict):
                raise BadRequest("link request 'args' must be a map")
            chain = payload.get("chain")
            chain = tuple(str(a) for a in chain) if chain else ()
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed link request ({op}): {exc!r}") from None
        silo = self._silo
        if op == "tell":
            found = silo.tell_nowait(type_name, key, method, args, idem, timeout, hops)
        else:
            found = silo.call_nowait(type_name, key, method, args, idem, timeout, hops, chain)
        if found is not None:
            if hops > 0:
                self.received += 1
            else:
                self.client_requests += 1
        return found

    def _checked(self, payload: dict[str, Any]) -> tuple[str, str, Any, int, float | None]:
        """``type, key, idem, hops, timeout`` of a request naming an actor, checked as
        HTTP checks them: the link is a front door too (the client's fast path)."""
        type_name, key = str(payload["type"]), str(payload["key"])
        problem, field = key_problem(key), "key"
        idem = payload.get("idem")
        if problem is None and idem is not None:
            field = IDEMPOTENCY_KEY
            if isinstance(idem, str):
                problem = key_problem(idem, IDEMPOTENCY_KEY)
            else:
                problem = f"{IDEMPOTENCY_KEY} must be a string"
        if problem is not None:
            raise BadRequest(problem, {"field": field})
        check_nesting(payload.get("args"))
        hops = int(payload.get("hops", 0))
        timeout = float(payload["timeout"]) if payload.get("timeout") else None
        return type_name, key, idem, hops, timeout

    async def serve(self, payload: Any) -> Any:
        """Handle one request that arrived over a link."""
        if not isinstance(payload, dict) or payload.get("op") not in OPS:
            raise BadRequest("malformed link request: expected a map with a known 'op'")
        silo = self._silo
        op = payload["op"]
        if op == STATS_OP:
            return local_stats(silo)
        try:
            type_name, key, idem, hops, timeout = self._checked(payload)
            if hops > 0:
                self.received += 1
            else:
                self.client_requests += 1
            if op == "event":
                return await silo.get_event(
                    type_name, key, str(payload["name"]), float(payload.get("wait", 0)), hops=hops
                )
            if op == "stream":
                return await silo.read_stream(
                    type_name,
                    key,
                    str(payload["name"]),
                    after=int(payload.get("after", -1)),
                    limit=int(payload.get("limit", 1000)),
                    wait=float(payload.get("wait", 0)),
                    hops=hops,
                )
            if op == INSPECT_OP:
                activate = bool(payload.get("activate"))
                return await inspect_actor(silo, type_name, key, activate=activate, hops=hops)
            if op == "reminders":
                return await silo.reminder_admin(
                    type_name, key, str(payload["action"]), payload.get("name"),
                    payload.get("request"), hops=hops,
                )  # fmt: skip
            method, args = str(payload["method"]), payload.get("args") or {}
            if not isinstance(args, dict):
                raise BadRequest("link request 'args' must be a map")
            if op == "tell":
                return await silo.tell(
                    type_name, key, method, args,
                    message_id=idem, timeout=timeout, hops=hops,
                )  # fmt: skip
            return await silo.call(
                type_name, key, method, args,
                idempotency_key=idem, timeout=timeout, hops=hops,
                chain=tuple(str(a) for a in payload.get("chain") or ()),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed link request ({op}): {exc!r}") from None

    async def close(self) -> None:
        await self.links.close()
