"""The serving end of the link (wire format: ``bayou.link``): answers silos and clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bayou import codec
from bayou.errors import (
    BadRequest,
    BayouError,
    CallTimeout,
    InternalError,
    PayloadTooLarge,
    Unavailable,
)
from bayou.link.deadlines import Deadlines
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

LinkHandler = Callable[[Any], Awaitable[Any]]
# Answers a request without a task when it can: the reply's future and the loop time by
# which it must be answered (else ``CallTimeout``), or None to have ``LinkHandler`` run it.
FastHandler = Callable[[Any], "tuple[asyncio.Future[Any], float] | None"]

_LATE = "no reply before the deadline; the call may still complete"


class LinkServer:
    """Answers link requests with ``handler(payload)``; mount ``handle`` at ``LINK_ROUTE``.

    Guarantees, per connection:

    - every well-formed request frame gets exactly one response frame while the connection
      is open: the handler's result, the ``BayouError`` it raised, or ``InternalError`` for
      any other exception (logged with its traceback here; the traceback never leaves);
    - with ``fast``, a request that ``fast(payload)`` answers with a future gets its reply
      when the future resolves, or ``CallTimeout`` at its deadline (the work goes on); no
      task is made for it. Every other request runs ``handler(payload)`` in a task;
    - at most ``max_concurrency`` requests are answered at once. Beyond that the connection stops
      reading until one finishes, so TCP backpressure slows the sender down instead of this
      silo queueing unbounded work (a task per request; the bound is what keeps it safe);
    - responses completed in the same event-loop turn leave in one websocket message;
    - a connection that breaks the wire format is closed with a close code and a reason and
      logged as a warning; every other connection goes on being served.

    Prefer ``mount(app)`` to adding ``handle`` by hand: it also drains the links when the
    app shuts down. Without that, aiohttp waits its whole ``shutdown_timeout`` for every
    open link (a websocket handler never finishes on its own) and then cancels it.

    A handler still running when its connection drops runs to completion (a caller that
    gave up does not cancel a turn; its retry finds the outcome) and its reply is dropped.
    """

    def __init__(
        self,
        handler: LinkHandler,
        *,
        fast: FastHandler | None = None,
        max_concurrency: int = 1024,
        max_msg_size: int = MAX_MESSAGE_BYTES,
        heartbeat: float = 5.0,
        drain_timeout: float = 5.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self.handler = handler
        self.fast = fast
        self.max_concurrency = max_concurrency
        self.max_msg_size = max_msg_size
        self.heartbeat = heartbeat
        self.drain_timeout = drain_timeout
        self.connections_opened = 0
        self.requests_received = 0
        self.messages_received = 0
        self.responses_sent = 0
        self.messages_sent = 0
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False

    @property
    def draining(self) -> bool:
        """True once ``close`` has begun: new links and new requests are turned away."""
        return self._draining

    def mount(self, app: web.Application) -> None:
        """Serve ``GET LINK_ROUTE`` on ``app`` and drain the links when it shuts down."""
        app.router.add_get(LINK_ROUTE, self.handle)
        app.on_shutdown.append(self._on_shutdown)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler: checks the version, upgrades, serves until the link closes."""
        version = request.query.get(VERSION_PARAM)
        if version != str(PROTOCOL_VERSION):
            log.warning(
                "refusing link from %s: protocol version %r, this silo speaks %d",
                request.remote,
                version,
                PROTOCOL_VERSION,
            )
            return _refuse(
                400,
                BadRequest(
                    f"unsupported link protocol version {ascii(version)[:24]}; "
                    f"this silo speaks {PROTOCOL_VERSION} (?{VERSION_PARAM}={PROTOCOL_VERSION})",
                    {"field": VERSION_PARAM, "supported": [PROTOCOL_VERSION]},
                ),
            )
        if self._draining:
            return _refuse(503, Unavailable("the silo is shutting down"))
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat,
            max_msg_size=self.max_msg_size,
            compress=False,  # msgpack of small frames barely shrinks; deflate costs CPU
            timeout=2.0,  # how long close() waits for the peer's closing handshake
        )
        if not ws.can_prepare(request).ok:
            return _refuse(400, BadRequest(f"{LINK_ROUTE} expects a websocket upgrade"))
        await ws.prepare(request)
        self.connections_opened += 1
        connection = _Connection(self, ws, str(request.remote))
        self._connections.add(connection)
        try:
            if self._draining:  # close() began while we were upgrading
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"silo shutting down")
            else:
                await connection.serve()
        finally:
            self._connections.discard(connection)
            connection.ended()
        return ws

    async def close(self, timeout: float | None = None) -> None:
        """Drain and close every link; new links are refused (503) from now on.

        Requests that arrive from now on are answered ``Unavailable`` (retryable) at once.
        Handlers already running get ``timeout`` seconds (default ``drain_timeout``) to
        finish, and their replies are sent; the rest are cancelled. Then each connection is
        closed with 1001 (going away).
        """
        self._draining = True
        running: set[asyncio.Future[Any]] = set(self._tasks)
        for connection in self._connections:
            running.update(connection.waiting)
        if running:
            await asyncio.wait(running, timeout=self.drain_timeout if timeout is None else timeout)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(c.close() for c in list(self._connections)))

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    def _spawn(self, connection: _Connection, request_id: int, payload: Any) -> None:
        task = asyncio.get_running_loop().create_task(connection.run(request_id, payload))
        self._tasks.add(task)
        task.add_done_callback(connection.finished)


class _Connection:
    """One accepted websocket; the reader runs in aiohttp's handler task."""

    def __init__(self, server: LinkServer, ws: web.WebSocketResponse, peer: str) -> None:
        self.server = server
        self.ws = ws
        self.peer = peer
        self.max_frame = frame_limit(server.max_msg_size)
        # Handlers running now; the reader waits on ``room`` when this reaches the bound.
        # (A counter, not a Semaphore: this is on the path of every request.)
        self.running = 0
        self.room: asyncio.Future[None] | None = None
        self.batcher = FrameBatcher(ws.send_bytes, server.max_msg_size, self._sent, self._failed)
        # Requests answered by ``fast``: their future -> request id, behind one timer.
        self.waiting: Deadlines[asyncio.Future[Any], int] = Deadlines(
            asyncio.get_running_loop(), self._late
        )

    async def serve(self) -> None:
        server = self.server
        fast = server.fast
        while True:
            msg = await self.ws.receive()
            if msg.type is WSMsgType.BINARY:
                server.messages_received += 1
                try:
                    frames = decode_message(msg.data, REQUEST)
                except ProtocolError as exc:
                    await self._reject(exc)
                    return
                for _, request_id, payload in frames:
                    server.requests_received += 1
                    if server.draining:
                        self.answer_error(request_id, Unavailable("the silo is shutting down"))
                        continue
                    if self.running >= server.max_concurrency:
                        self.room = asyncio.get_running_loop().create_future()
                        await self.room
                        if server.draining:  # close() began while we waited
                            self.answer_error(request_id, Unavailable("the silo is shutting down"))
                            continue
                    self.running += 1
                    if fast is None or not self._try_fast(fast, request_id, payload):
                        server._spawn(self, request_id, payload)
            elif msg.type is WSMsgType.TEXT:
                await self._reject(
                    ProtocolError(WSCloseCode.UNSUPPORTED_DATA, "text messages are not accepted")
                )
                return
            elif msg.type is WSMsgType.ERROR:
                # aiohttp already closed the socket, e.g. with 1009 for an oversized message.
                log.warning("link from %s failed: %s", self.peer, msg.data)
                return
            else:  # CLOSE, CLOSING, CLOSED: the peer or close() ended the link
                return

    async def run(self, request_id: int, payload: Any) -> None:
        try:
            result = await self.server.handler(payload)
        except BayouError as exc:
            self.answer_error(request_id, exc)
            return
        except Exception:
            log.exception("link request %d from %s failed", request_id, self.peer)
            self.answer_error(request_id, _internal())
            return
        self.reply(request_id, result)

    def reply(self, request_id: int, result: Any) -> None:
        try:
            frame = codec.pack([RESPONSE, request_id, True, result])
        except Exception:
            log.exception("link reply %d to %s cannot be encoded", request_id, self.peer)
            self.answer_error(request_id, _internal())
            return
        if len(frame) > self.max_frame:
            self.answer_error(
                request_id,
                PayloadTooLarge(
                    f"the reply is {len(frame)} bytes; the link carries at most {self.max_frame}",
                    {"limit": self.max_frame},
                ),
            )
            return
        self.batcher.put(frame)

    def _try_fast(self, fast: FastHandler, request_id: int, payload: Any) -> bool:
        """Whether ``fast`` took the request (answered, or waiting on its future)."""
        try:
            found = fast(payload)
        except BayouError as exc:
            self.answer_error(request_id, exc)
        except Exception:
            log.exception("link request %d from %s failed", request_id, self.peer)
            self.answer_error(request_id, _internal())
        else:
            if found is None:
                return False
            future, deadline = found
            if future.done():
                self._answer(request_id, future)
            else:
                self.waiting.add(future, deadline, request_id)
                future.add_done_callback(self._resolved)
                return True
        self.release()
        return True

    def _resolved(self, future: asyncio.Future[Any]) -> None:
        request_id = self.waiting.pop(future)
        if request_id is not None:  # else: answered CallTimeout already
            self._answer(request_id, future)
            self.release()

    def _answer(self, request_id: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.answer_error(request_id, Unavailable("the request was cancelled; retry"))
            return
        exc = future.exception()
        if exc is None:
            self.reply(request_id, future.result())
        elif isinstance(exc, BayouError):
            self.answer_error(request_id, exc)
        else:
            log.error("link request %d from %s failed", request_id, self.peer, exc_info=exc)
            self.answer_error(request_id, _internal())

    def _late(self, future: asyncio.Future[Any], request_id: int) -> None:
        self.answer_error(request_id, CallTimeout(_LATE))
        self.release()

    def ended(self) -> None:
        """The connection is gone: stop sending; replies still to come are dropped."""
        self.batcher.close()
        for future in list(self.waiting):
            future.remove_done_callback(self._resolved)
        self.waiting.clear()

    def answer_error(self, request_id: int, exc: BayouError) -> None:
        try:
            frame = codec.pack([RESPONSE, request_id, False, exc.to_wire()["error"]])
        except Exception:  # a detail msgpack cannot carry
            log.exception("link error reply %d to %s cannot be encoded", request_id, self.peer)
            frame = codec.pack([RESPONSE, request_id, False, _internal().to_wire()["error"]])
        self.batcher.put(frame)

    def finished(self, task: asyncio.Task[None]) -> None:
        self.server._tasks.discard(task)
        self.release()

    def release(self) -> None:
        """One request fewer being answered: the reader may go on if it waited for room."""
        self.running -= 1
        if self.room is not None and not self.room.done():
            self.room.set_result(None)

    async def close(self) -> None:
        """Send what is queued, then close with 1001."""
        await self.batcher.drain()
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"silo shutting down")

    async def _reject(self, exc: ProtocolError) -> None:
        log.warning("closing link from %s (%d): %s", self.peer, exc.code, exc.reason)
        self.batcher.close()
        await self.ws.close(code=exc.code, message=exc.close_reason())

    def _sent(self, frames: int) -> None:
        self.server.messages_sent += 1
        self.server.responses_sent += frames

    def _failed(self, exc: BaseException) -> None:
        log.info("link to %s dropped replies: %s", self.peer, exc)


def _internal() -> InternalError:
    return InternalError("internal error; the silo log has details")


def _refuse(status: int, exc: BayouError) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(exc.to_wire()).encode(),
        content_type="application/json",
        headers={VERSIONS_HEADER: str(PROTOCOL_VERSION), REFUSAL_HEADER: exc.message},
    )
