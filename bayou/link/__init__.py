"""The link: request/response RPC multiplexed over one websocket per connection, on a silo's
HTTP port. Silos call each other over it, and the Python client calls silos over it (its
fast path: many calls per message, no HTTP request to parse per call).

This package imports neither the runtime nor the client, so both may use it: ``LinkPool``
(``pool``) sends requests, keeping one connection per address; ``frames`` holds what both
ends share. The serving end, ``LinkServer``, lives in ``bayou.runtime.transport``.

Wire format, protocol version 1
-------------------------------
The client opens a websocket with ``GET /v1/internal/link?v=1``. A server that does not
speak the requested version refuses the upgrade with HTTP 400, a ``BadRequest`` error body
and a ``Bayou-Link-Versions`` header listing the versions it does speak; any incompatible
change to what follows gets a new version number.

Every websocket message is **binary** and holds exactly **one msgpack array of frames**::

    message  = [frame, frame, ...]
    request  = [0, request_id, payload]          client -> server
    response = [1, request_id, ok, payload]      server -> client

- ``request_id`` is an int the client picks, unique among its outstanding requests on that
  connection; ids are per connection, so a reconnect may reuse them.
- ``payload`` is any msgpack value; str and bin stay distinct (``bayou.codec``).
- ``ok`` is a bool. True: ``payload`` is the handler's result. False: ``payload`` is the
  error dict ``{"type", "message", "detail"}``, i.e. ``BayouError.to_wire()["error"]``,
  and the client raises the ``bayou.errors`` class named by ``type``.
- Responses come in any order. Frames completed in the same event-loop turn travel in one
  message, and no message is larger than ``max_msg_size`` (8 MiB unless both ends are
  configured otherwise); a single frame that would not fit is refused by its sender, which
  fails only that request (``PayloadTooLarge``), never the connection.

A receiver closes a connection that breaks these rules, with a websocket close code: a text
message 1003, a message that is not msgpack 1007, anything but an array of well-formed
frames 1002, a message over ``max_msg_size`` 1009. A draining silo closes with 1001.
"""

from __future__ import annotations

from bayou.link.frames import LINK_ROUTE, MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from bayou.link.pool import LinkPool

__all__ = ["LINK_ROUTE", "MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "LinkPool"]
