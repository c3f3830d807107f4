"""What both ends of the link share: constants, message decoding and the frame batcher.

The wire format itself is documented in ``bayou.link``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

from aiohttp import ClientError, WSCloseCode

from bayou import codec

log = logging.getLogger("bayou.transport")

LINK_ROUTE: Final = "/v1/internal/link"
PROTOCOL_VERSION: Final = 1
VERSION_PARAM: Final = "v"
# Sent with a refused handshake so the other end can say which versions would have worked.
VERSIONS_HEADER: Final = "Bayou-Link-Versions"
# The refusal's message, readable by a websocket client that never sees the body.
REFUSAL_HEADER: Final = "Bayou-Link-Refused"

REQUEST: Final = 0
RESPONSE: Final = 1

MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
# A msgpack array header takes at most 5 bytes; the rest of a message is whole frames.
_ARRAY_HEADER_MAX: Final = 5


def frame_limit(max_msg_size: int) -> int:
    """The largest encoded frame that still fits in a message of ``max_msg_size`` bytes."""
    return max_msg_size - _ARRAY_HEADER_MAX


class ProtocolError(Exception):
    """The peer broke the wire format; the connection must be closed with ``code``."""

    def __init__(self, code: WSCloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def close_reason(self) -> bytes:
        # A close frame's reason is limited to 123 bytes of UTF-8.
        return self.reason.encode()[:120]


_array_header = codec.array_header


def decode_message(data: bytes, kind: int) -> list[list[Any]]:
    """The frames of one binary message, all of ``kind``; raises ``ProtocolError`` otherwise.

    The whole message is checked before any frame is returned, so a bad message never
    starts half of its requests.
    """
    try:
        frames = codec.unpack(data)
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise ProtocolError(
            WSCloseCode.INVALID_TEXT, f"message is not msgpack: {type(exc).__name__}"
        ) from None
    if not isinstance(frames, list):
        raise ProtocolError(
            WSCloseCode.PROTOCOL_ERROR,
            f"message must be an array of frames, not {type(frames).__name__}",
        )
    size = 3 if kind == REQUEST else 4
    request = kind == REQUEST
    for index, frame in enumerate(frames):
        # type(...) is int, inline: bool is an int subclass, but True is not a frame kind
        # or a request id (and this runs for every frame).
        if not (
            type(frame) is list
            and len(frame) == size
            and type(frame[0]) is int
            and frame[0] == kind
            and type(frame[1]) is int
            and (request or type(frame[2]) is bool)
        ):
            expected = "[0, id, payload]" if kind == REQUEST else "[1, id, ok, payload]"
            raise ProtocolError(
                WSCloseCode.PROTOCOL_ERROR, f"frame {index} is not {expected}: {frame!r:.60}"
            )
    return frames


class FrameBatcher:
    """Sends queued frames, each event-loop turn's frames as one websocket message.

    Guarantees: frames leave in the order they were queued; a message holds at most
    ``max_msg_size`` bytes (frames must each be at most ``frame_limit(max_msg_size)``);
    at most one send is in flight, and frames queued meanwhile go in the next message, so a
    slow socket makes batches bigger instead of queueing many small sends. After a failed
    send or ``close`` every frame, queued or later, is dropped: the connection is gone and
    whoever reads it reports that.
    """

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        max_msg_size: int,
        on_sent: Callable[[int], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._send = send
        self._max_msg_size = max_msg_size
        self._on_sent = on_sent
        self._on_error = on_error
        self._frames: list[bytes] = []
        self._flush_scheduled = False
        self._sending: asyncio.Task[None] | None = None
        self._closed = False
        self._loop = asyncio.get_running_loop()

    def put(self, frame: bytes) -> None:
        """Queue one encoded frame for the next message."""
        if self._closed:
            return
        self._frames.append(frame)
        if not self._flush_scheduled and self._sending is None:
            # call_soon, not a timer: the flush runs right after everything already runnable
            # this turn, so those frames share the message without adding latency.
            self._flush_scheduled = True
            self._loop.call_soon(self._start_flush)

    async def drain(self) -> None:
        """Wait until every frame queued so far has been handed to the socket (or dropped)."""
        while not self._closed and (self._frames or self._sending or self._flush_scheduled):
            if self._sending is not None:
                # wait() neither raises the task's exception nor cancels it if we are.
                await asyncio.wait({self._sending})
            else:
                await asyncio.sleep(0)

    def close(self) -> None:
        """Drop queued frames and stop sending; a send already in progress is cancelled."""
        self._closed = True
        self._frames.clear()
        if self._sending is not None:
            self._sending.cancel()

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        if self._closed or self._sending is not None or not self._frames:
            return
        frames, self._frames = self._frames, []
        self._sending = self._loop.create_task(self._send_all(frames), name="bayou-link-send")

    def _messages(self, frames: list[bytes]) -> Iterator[tuple[int, bytes]]:
        budget = self._max_msg_size - _ARRAY_HEADER_MAX
        start, size = 0, 0
        for index, frame in enumerate(frames):
            if index > start and size + len(frame) > budget:
                yield index - start, _array_header(index - start) + b"".join(frames[start:index])
                start, size = index, 0
            size += len(frame)
        yield len(frames) - start, _array_header(len(frames) - start) + b"".join(frames[start:])

    async def _send_all(self, frames: list[bytes]) -> None:
        try:
            for count, message in self._messages(frames):
                await self._send(message)
                self._on_sent(count)
        except (ConnectionError, ClientError) as exc:
            # aiohttp raises these once the connection is closing; the reader side sees the
            # close too, but tell the owner now so nobody waits on frames that were dropped.
            self._sending = None
            self._closed = True
            self._frames.clear()
            self._on_error(exc)
            return
        finally:
            self._sending = None
        if self._frames and not self._closed:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)
