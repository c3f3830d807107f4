"""The silo-to-silo link: request/response RPC multiplexed over one websocket per silo pair.

Import from here: ``LinkServer`` (``transport_server``) answers requests on the silo's HTTP
port at ``LINK_ROUTE``; ``LinkPool`` sends them, keeping one connection per peer address.
The calling end and the framing live in ``bayou.link``, which the client uses too; the
wire format is documented there.
"""

from __future__ import annotations

from bayou.link.frames import LINK_ROUTE, MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from bayou.link.pool import LinkPool
from bayou.runtime.transport_server import LinkHandler, LinkServer

__all__ = [
    "LINK_ROUTE",
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "LinkHandler",
    "LinkPool",
    "LinkServer",
]
