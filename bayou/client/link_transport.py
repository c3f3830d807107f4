"""The client's fast path: calls and tells over the link, many per websocket message.

Plain HTTP costs the silo one request to parse and one response to build per call; the link
(``bayou.link``, a websocket upgrade on the silo's HTTP port, so it passes through ordinary
load balancers) carries msgpack frames, and every call finished in one event-loop turn
shares a message each way. A request sent with ``hops=0`` is exactly a fresh call: the silo
that receives it routes it to the actor's owner itself.

This module only performs one attempt; ``Client`` keeps the retry loop, the idempotency key
and the deadline, so retries behave the same over either transport.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp

from bayou.errors import SiloUnreachable, Unauthorized
from bayou.link import LinkPool

# HTTP statuses of a refused upgrade that mean "this server has no link for us" (an older
# silo, a proxy that does not pass websockets, another protocol version): retrying the
# upgrade would be refused again, so such an address is called over HTTP instead.
_NO_LINK_STATUSES: Final = frozenset({400, 404, 405, 426, 501})

# How long a websocket may stay silent before the client pings it, and how long it waits
# for the TCP connection and the upgrade (the call's own deadline bounds it too).
_HEARTBEAT: Final = 5.0
_CONNECT_TIMEOUT: Final = 5.0


class LinkRefused(Exception):
    """The silo at ``address`` does not serve the link; nothing was sent to it."""

    def __init__(self, address: str, cause: SiloUnreachable) -> None:
        super().__init__(f"{address} does not serve the link: {cause}")
        self.address = address
        self.cause = cause


class LinkTransport:
    """One attempt of a call or tell over the link, to a given silo address.

    Guarantees: one connection per silo address, shared by every concurrent call; the
    result (or the ``bayou.errors`` class the silo raised) of each attempt; ``SiloUnreachable``
    when the connection fails or drops before the reply; a local ``CallTimeout`` when no
    reply comes within the attempt's time. With ``fallback`` an address that refuses the
    upgrade is remembered as HTTP-only and ``LinkRefused`` raised (the caller then uses
    HTTP); without it the refusal is raised as the ``SiloUnreachable`` it is.
    """

    def __init__(self, session: aiohttp.ClientSession, *, fallback: bool) -> None:
        self.pool = LinkPool(
            heartbeat=_HEARTBEAT, connect_timeout=_CONNECT_TIMEOUT, session=session
        )
        self.fallback = fallback
        self._http_only: set[str] = set()

    def serves(self, address: str) -> bool:
        """False once ``address`` refused the link (only with ``fallback``)."""
        return address not in self._http_only

    async def send(
        self,
        address: str,
        tell: bool,
        type_name: str,
        key: str,
        method: str,
        args: dict[str, Any],
        idempotency_key: str | None,
        remaining: float,
    ) -> dict[str, Any]:
        """The success body, shaped like the HTTP API's: ``{"result"}`` or ``{"message_id"}``."""
        payload = {
            "op": "tell" if tell else "call",
            "type": type_name,
            "key": key,
            "method": method,
            "args": args,
            "idem": idempotency_key,
            "timeout": remaining,
            "hops": 0,
        }
        try:
            reply = await self.pool.request(address, payload, remaining)
        except SiloUnreachable as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            if detail.get("status") == Unauthorized.status:
                # The silo wants the shared secret: no retry can change that.
                raise Unauthorized(f"{address} refused the link: {exc.message}", detail) from exc
            if self.fallback and _refused(exc):
                self._http_only.add(address)
                raise LinkRefused(address, exc) from exc
            raise
        if tell:
            return {"message_id": reply}
        return {"result": reply}

    async def close(self) -> None:
        """Close every link (the session stays open: it belongs to the client)."""
        await self.pool.close()


def _refused(exc: SiloUnreachable) -> bool:
    detail = exc.detail
    return isinstance(detail, dict) and detail.get("status") in _NO_LINK_STATUSES
