"""What both ends of the link share; it lives in ``bayou.link.frames`` (the client uses it
too) and is re-exported here under its old name."""

from __future__ import annotations

from bayou.link.frames import (
    LINK_ROUTE,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    REFUSAL_HEADER,
    REQUEST,
    RESPONSE,
    VERSION_PARAM,
    VERSIONS_HEADER,
    FrameBatcher,
    ProtocolError,
    decode_message,
    frame_limit,
    log,
)

__all__ = [
    "LINK_ROUTE",
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "REFUSAL_HEADER",
    "REQUEST",
    "RESPONSE",
    "VERSIONS_HEADER",
    "VERSION_PARAM",
    "FrameBatcher",
    "ProtocolError",
    "decode_message",
    "frame_limit",
    "log",
]
