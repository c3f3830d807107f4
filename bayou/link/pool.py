"""The calling end of a link (wire format: ``bayou.link``): silos call their peers with it,
and the Python client calls silos with it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from bayou import codec
from bayou.errors import (
    BayouError,
    CallTimeout,
    PayloadTooLarge,
    SiloUnreachable,
    error_class,
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

# After a connect to an address fails, requests to it fail at once for this long instead
# of each trying again: a crashed silo's callers (hundreds a second, until the cluster
# declares it dead) would otherwise each pay for a refused connection.
RECONNECT_PAUSE = 0.2


class LinkPool:
    """Request/response calls to silos, over one websocket per silo address.

    Guarantees:

    - one connection per address at a time, opened by the first request (concurrent first
      requests share the connect) and reused by every request until it drops;
    - requests issued in the same event-loop turn leave in one websocket message;
    - ``request`` returns the peer handler's result, or raises the ``bayou.errors`` class
      the peer sent; ``SiloUnreachable`` (retryable) if the connection cannot be opened,
      is refused, or drops before the reply, which fails every request pending on it at
      once, and the next request opens a new connection (after a failed connect, not for
      ``RECONNECT_PAUSE`` seconds: requests meanwhile fail at once); ``CallTimeout`` if no
      reply comes within ``timeout`` (the connection stays up and a late reply is dropped);
    - a dead peer that stops answering pings is noticed within about 1.5 x ``heartbeat``.

    Counters (whole pool, all connections ever): ``connections_opened``, ``requests_sent``
    and ``messages_sent`` (request frames and the websocket messages that carried them),
    ``responses_received`` and ``messages_received``.

    A ``session`` passed in is used for the connections and left open by ``close``;
    otherwise the pool makes its own on first use and closes it.
    """

    def __init__(
        self,
        *,
        heartbeat: float = 5.0,
        connect_timeout: float = 5.0,
        max_msg_size: int = MAX_MESSAGE_BYTES,
        session: aiohttp.ClientSession | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.headers = headers or {}  # sent with every link's upgrade (the shared secret)
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.max_msg_size = max_msg_size
        self.connections_opened = 0
        self.requests_sent = 0
        self.messages_sent = 0
        self.responses_received = 0
        self.messages_received = 0
        self.connect_attempts = 0
        self._links: dict[str, _Link] = {}
        # Addresses whose last connect failed, and when: see RECONNECT_PAUSE.
        self._refused: dict[str, tuple[float, SiloUnreachable]] = {}
        self._session: aiohttp.ClientSession | None = session
        self._owns_session = session is None
        self._closed = False

    async def request(self, address: str, payload: Any, timeout: float) -> Any:
        """Run the handler of the silo at ``address`` (e.g. ``http://10.0.0.5:8080``).

        ``payload`` must be msgpack-encodable (``TypeError`` otherwise); one whose frame
        exceeds the link's message limit raises ``PayloadTooLarge`` without touching the
        connection. ``timeout`` (seconds) covers connecting, sending and the reply.
        """
        if self._closed:
            raise SiloUnreachable("the link pool is closed", {"address": address})
        key = address.rstrip("/")
        link = self._links.get(key)
        if link is None or link.failure is not None:
            refused = self._refused.get(key)
            if refused is not None:
                at, failure = refused
                if asyncio.get_running_loop().time() - at < RECONNECT_PAUSE:
                    raise SiloUnreachable(failure.message, failure.detail)
                del self._refused[key]
            link = _Link(self, key)
            self._links[key] = link
            self.connect_attempts += 1
        return await link.request(payload, timeout)

    def _connect_failed(self, address: str, failure: SiloUnreachable) -> None:
        self._refused[address] = (asyncio.get_running_loop().time(), failure)

    async def forget(self, address: str) -> None:
        """Close the connection to ``address`` (a peer that left); its pending requests fail
        with ``SiloUnreachable``. A later request to the address connects again."""
        link = self._links.pop(address.rstrip("/"), None)
        if link is not None:
            await link.close(f"the link to {link.address} was closed: the peer left")

    async def close(self) -> None:
        """Close every connection, failing pending requests; later requests raise
        ``SiloUnreachable``."""
        self._closed = True
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.close("the link pool was closed") for link in links))
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    @property
    def connected(self) -> list[str]:
        """Addresses with an open connection right now."""
        return [addr for addr, link in self._links.items() if link.open]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                # One socket per peer, all long-lived: no pool limit should ever make a peer
                # wait for another peer's connection.
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.connect_timeout, sock_connect=self.connect_timeout
                ),
            )
        return self._session

    def _dropped(self, link: _Link) -> None:
        if self._links.get(link.address) is link:
            del self._links[link.address]


class _Link:
    """One connection to one peer. A failed link is never revived; the pool makes another."""

    def __init__(self, pool: LinkPool, address: str) -> None:
        self.pool = pool
        self.address = address
        self.max_frame = frame_limit(pool.max_msg_size)
        self.failure: SiloUnreachable | None = None
        self.open = False
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._loop = asyncio.get_running_loop()
        # Pending requests' timeouts behind one timer (request id -> timeout in seconds).
        self._deadlines: Deadlines[int, float] = Deadlines(self._loop, self._expired)
        self._next_id = 0
        # Frames of requests made while connecting; they go out in the first message.
        self._early: list[bytes] | None = []
        self._batcher: FrameBatcher | None = None
        self._task = self._loop.create_task(self._run(), name=f"bayou-link {address}")

    async def request(self, payload: Any, timeout: float) -> Any:
        if self.failure is not None:
            raise SiloUnreachable(self.failure.message, self.failure.detail)
        request_id = self._next_id
        self._next_id += 1
        frame = codec.pack([REQUEST, request_id, payload])
        if len(frame) > self.max_frame:
            raise PayloadTooLarge(
                f"the request is {len(frame)} bytes; the link carries at most {self.max_frame}",
                {"limit": self.max_frame},
            )
        loop = self._loop
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[request_id] = future
        if self._batcher is not None:
            self._batcher.put(frame)
        elif self._early is not None:
            self._early.append(frame)
        # Not asyncio.timeout(): a CallTimeout the peer itself sent cannot be mistaken for
        # ours. And not a timer per request: one timer, never later than the earliest
        # deadline, stands for every pending request.
        self._deadlines.add(request_id, loop.time() + timeout, timeout)
        try:
            return await future
        finally:
            self._pending.pop(request_id, None)
            self._deadlines.pop(request_id)

    def _expired(self, request_id: int, timeout: float) -> None:
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_exception(
                CallTimeout(
                    f"no reply from {self.address} within {timeout}s",
                    {"address": self.address, "timeout": timeout},
                )
            )

    async def close(self, reason: str) -> None:
        self._fail(SiloUnreachable(reason, {"address": self.address}))
        self._task.cancel()
        await asyncio.wait({self._task})

    async def _run(self) -> None:
        url = f"{self.address}{LINK_ROUTE}?{VERSION_PARAM}={PROTOCOL_VERSION}"
        try:
            ws = await self.pool._http().ws_connect(
                url,
                heartbeat=self.pool.heartbeat,
                max_msg_size=self.pool.max_msg_size,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            headers: Mapping[str, str] = exc.headers or {}
            why = headers.get(REFUSAL_HEADER, exc.message)
            log.warning("%s refused the link: HTTP %d %s", self.address, exc.status, why)
            self._fail(
                SiloUnreachable(
                    f"{self.address} refused the link (HTTP {exc.status}): {why}",
                    {
                        "address": self.address,
                        "status": exc.status,
                        "versions": headers.get(VERSIONS_HEADER),
                    },
                )
            )
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            failure = SiloUnreachable(
                f"cannot connect to {self.address}: {str(exc) or type(exc).__name__}",
                {"address": self.address},
            )
            self.pool._connect_failed(self.address, failure)
            self._fail(failure)
            return
        except asyncio.CancelledError:
            self._fail(SiloUnreachable("the link was closed", {"address": self.address}))
            raise
        self.pool.connections_opened += 1
        self.open = True
        batcher = FrameBatcher(ws.send_bytes, self.pool.max_msg_size, self._sent, self._lost)
        self._batcher = batcher
        for frame in self._early or ():
            batcher.put(frame)
        self._early = None
        why = "the link was closed"
        try:
            why = await self._read(ws)
        finally:
            self.open = False
            batcher.close()
            self._fail(
                SiloUnreachable(
                    f"lost the link to {self.address}: {why}", {"address": self.address}
                )
            )
            if not ws.closed:
                await ws.close(code=WSCloseCode.GOING_AWAY)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Resolve replies until the connection ends; returns why it ended."""
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.BINARY:
                self.pool.messages_received += 1
                try:
                    frames = decode_message(msg.data, RESPONSE)
                except ProtocolError as exc:
                    return await self._reject(ws, exc)
                for _, request_id, ok, payload in frames:
                    self.pool.responses_received += 1
                    future = self._pending.pop(request_id, None)
                    if future is None or future.done():
                        continue  # its caller timed out or went away
                    if ok:
                        future.set_result(payload)
                    else:
                        future.set_exception(_error(payload))
            elif msg.type is WSMsgType.TEXT:
                return await self._reject(
                    ws,
                    ProtocolError(WSCloseCode.UNSUPPORTED_DATA, "text messages are not accepted"),
                )
            elif msg.type is WSMsgType.ERROR:
                return f"{msg.data or 'connection error'}"
            else:
                code = ws.close_code
                extra = f": {msg.extra}" if msg.extra else ""
                return f"closed (code {code}{extra})" if code is not None else "closed"

    async def _reject(self, ws: aiohttp.ClientWebSocketResponse, exc: ProtocolError) -> str:
        log.warning("closing link to %s (%d): %s", self.address, exc.code, exc.reason)
        await ws.close(code=exc.code, message=exc.close_reason())
        return f"protocol error: {exc.reason}"

    def _fail(self, exc: SiloUnreachable) -> None:
        if self.failure is None:
            self.failure = exc
        self.pool._dropped(self)
        self._early = None
        self._deadlines.clear()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                # One instance per waiter: a shared exception would collect their tracebacks.
                future.set_exception(SiloUnreachable(self.failure.message, self.failure.detail))

    def _sent(self, frames: int) -> None:
        self.pool.messages_sent += 1
        self.pool.requests_sent += frames

    def _lost(self, exc: BaseException) -> None:
        # A send failed: the socket is going; fail now rather than when the reader notices.
        self._fail(
            SiloUnreachable(f"lost the link to {self.address}: {exc}", {"address": self.address})
        )
        self._task.cancel()


def _error(payload: Any) -> BayouError:
    if isinstance(payload, dict):
        cls = error_class(str(payload.get("type", "")))
        return cls(str(payload.get("message", "")), payload.get("detail"))
    return BayouError(f"malformed error from a peer silo: {payload!r:.100}")
