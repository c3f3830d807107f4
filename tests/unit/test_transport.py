"""The silo-to-silo link over real loopback sockets: a real aiohttp server with a
``LinkServer`` and a ``LinkPool`` calling it, plus raw websockets for malformed input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from bayou import codec, errors
from bayou.link import pool as transport_client
from bayou.runtime.transport import LINK_ROUTE, LinkPool, LinkServer


class Peer:
    """A silo stand-in: an aiohttp server on 127.0.0.1 whose link handler runs test ops.

    Each start is a new ``LinkServer``, as a restarted silo process would have.
    """

    def __init__(self, **server_options: Any) -> None:
        self.server_options = server_options
        self.server = LinkServer(self.handle, **server_options)
        self.port = 0
        self.release = asyncio.Event()
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self.transports: list[asyncio.Transport] = []
        self._started = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.address}{LINK_ROUTE}"

    async def handle(self, payload: Any) -> Any:
        op, arg = payload
        self.calls += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self._started.set()
        try:
            if op == "echo":
                return arg
            if op == "yield":  # answers in a later loop turn, like a real actor call
                await asyncio.sleep(0)
                return arg
            if op == "nap":
                await asyncio.sleep(arg)
                return arg
            if op == "block":
                await self.release.wait()
                return arg
            if op == "raise":
                name, message, detail = arg
                raise errors.error_class(name)(message, detail)
            if op == "boom":
                raise ValueError(arg)
            if op == "unencodable":
                return object()
            if op == "big":
                return b"x" * arg
            raise AssertionError(f"unknown op {op!r}")
        finally:
            self.running -= 1

    async def wait_running(self, n: int) -> None:
        """Until ``n`` handlers are running at once."""
        while self.running < n:
            self._started.clear()
            await self._started.wait()

    async def start(self) -> None:
        self.server = LinkServer(self.handle, **self.server_options)
        app = web.Application()
        app.router.add_get(LINK_ROUTE, self._route)
        app.on_shutdown.append(self._shutdown)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _route(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            self.transports.append(request.transport)
        return await self.server.handle(request)

    async def _shutdown(self, app: web.Application) -> None:
        await self.server.close(timeout=0.2)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    await p.start()
    yield p
    p.release.set()
    await p.stop()


@pytest.fixture
async def pool() -> AsyncIterator[LinkPool]:
    links = LinkPool(connect_timeout=2.0)
    yield links
    await links.close()


@pytest.fixture
async def raw() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# --------------------------------------------------------------------------- requests


PAYLOADS = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    "",
    "héllo wörld ✓",
    b"",
    b"\x00\xff\x80",
    [],
    [1, [2, [3, None]], "x"],
    {},
    {"nested": {"list": [1, 2.5, "s", b"b", None, True]}},
    {1: "int key", "s": "str key"},
    "x" * 200_000,
]


async def test_round_trip_of_payload_types(peer: Peer, pool: LinkPool) -> None:
    for payload in PAYLOADS:
        assert await pool.request(peer.address, ["echo", payload], 5.0) == payload
    # str and bytes stay apart both ways.
    assert isinstance(await pool.request(peer.address, ["echo", b"ab"], 5.0), bytes)
    assert isinstance(await pool.request(peer.address, ["echo", "ab"], 5.0), str)
    assert pool.connections_opened == 1


async def test_concurrent_requests_share_one_connection_in_few_messages(
    peer: Peer, pool: LinkPool
) -> None:
    n = 2000
    for wave in range(2):  # the first wave waits for the connect; the second finds it open
        results = await asyncio.gather(
            *(pool.request(peer.address, ["yield", i], 10.0) for i in range(n))
        )
        assert results == list(range(n)), f"wave {wave}"
    requests = 2 * n
    assert pool.connections_opened == 1
    assert peer.server.connections_opened == 1
    assert pool.requests_sent == requests
    assert peer.server.requests_received == requests
    assert peer.server.responses_sent == requests
    assert pool.responses_received == requests
    # Batching: each loop turn's frames share one websocket message, both ways.
    assert pool.messages_sent <= requests / 10, (pool.messages_sent, requests)
    assert peer.server.messages_sent <= requests / 10, (peer.server.messages_sent, requests)
    print(
        f"\nbatching: {requests} requests in {pool.messages_sent} messages, "
        f"{requests} replies in {peer.server.messages_sent} messages"
    )


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("UnknownMethod", {"known": ["add", "get"]}),
        ("InvalidArguments", [{"field": "n", "message": "not an int"}]),
        ("ActorError", {"exception": "KeyError"}),
        ("Unavailable", None),
        ("FencedWrite", {"partition": 7}),
        ("CallTimeout", {"timeout": 1.0}),  # the peer's own timeout, not ours
    ],
)
async def test_error_frames_raise_the_same_class(
    peer: Peer, pool: LinkPool, name: str, detail: Any
) -> None:
    with pytest.raises(errors.BayouError) as caught:
        await pool.request(peer.address, ["raise", [name, f"{name} happened", detail]], 5.0)
    assert type(caught.value) is errors.error_class(name)
    assert caught.value.message == f"{name} happened"
    assert caught.value.detail == detail
    assert await pool.request(peer.address, ["echo", 1], 5.0) == 1


async def test_a_plain_exception_becomes_internal_error_without_traceback(
    peer: Peer, pool: LinkPool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="bayou.transport"):
        with pytest.raises(errors.InternalError) as caught:
            await pool.request(peer.address, ["boom", "secret-sauce"], 5.0)
        with pytest.raises(errors.InternalError):
            await pool.request(peer.address, ["unencodable", None], 5.0)
    text = f"{caught.value} {caught.value.detail}"
    assert "secret-sauce" not in text
    assert "Traceback" not in text
    assert "ValueError" not in text
    # The traceback is in the serving silo's log instead.
    assert any(r.exc_info and "secret-sauce" in str(r.exc_info[1]) for r in caplog.records)
    assert await pool.request(peer.address, ["echo", 1], 5.0) == 1


async def test_timeout_raises_call_timeout_and_the_link_stays_usable(
    peer: Peer, pool: LinkPool
) -> None:
    assert await pool.request(peer.address, ["echo", "warm"], 5.0) == "warm"
    started = time.monotonic()
    with pytest.raises(errors.CallTimeout) as caught:
        await pool.request(peer.address, ["block", "late"], 0.2)
    assert time.monotonic() - started < 2.0
    assert "no reply" in caught.value.message
    assert isinstance(caught.value, errors.RETRYABLE)
    peer.release.set()
    # The late reply arrives and is dropped; the connection carries on.
    for _ in range(100):
        if pool.responses_received == 2:
            break
        await asyncio.sleep(0.01)
    assert pool.responses_received == 2
    assert await pool.request(peer.address, ["echo", "after"], 5.0) == "after"
    assert pool.connections_opened == 1


async def test_handlers_per_connection_are_bounded(pool: LinkPool) -> None:
    p = Peer(max_concurrency=8)
    await p.start()
    try:
        results = await asyncio.gather(
            *(pool.request(p.address, ["nap", 0.01], 10.0) for _ in range(100))
        )
        assert results == [0.01] * 100
        assert p.max_running == 8
    finally:
        await p.stop()


# --------------------------------------------------------------------------- failures


async def test_a_crashed_peer_fails_pending_requests_fast(peer: Peer, pool: LinkPool) -> None:
    pending = [
        asyncio.create_task(pool.request(peer.address, ["block", i], 30.0)) for i in range(50)
    ]
    await peer.wait_running(50)
    for tr in peer.transports:
        tr.abort()  # the process died: no close frame, just a reset socket
    async with asyncio.timeout(3.0):
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(o, errors.SiloUnreachable) for o in outcomes), outcomes


async def test_a_stopped_peer_fails_pending_requests_fast(peer: Peer, pool: LinkPool) -> None:
    pending = [
        asyncio.create_task(pool.request(peer.address, ["block", i], 30.0)) for i in range(50)
    ]
    await peer.wait_running(50)
    started = time.monotonic()
    await peer.stop()  # the handlers never finish: drained for 0.2 s, then cancelled
    async with asyncio.timeout(3.0):
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert time.monotonic() - started < 3.0
    assert all(isinstance(o, errors.SiloUnreachable) for o in outcomes), outcomes
    assert "1001" in str(outcomes[0])


async def test_draining_finishes_running_handlers_and_delivers_their_replies(
    peer: Peer, pool: LinkPool
) -> None:
    call = asyncio.create_task(pool.request(peer.address, ["block", "in flight"], 10.0))
    await peer.wait_running(1)
    closing = asyncio.create_task(peer.server.close(timeout=5.0))
    await asyncio.sleep(0.05)
    assert peer.server.draining and not closing.done()
    peer.release.set()
    assert await call == "in flight"
    await closing
    # The server refuses new links while draining (503): retryable, with the reason.
    with pytest.raises(errors.SiloUnreachable, match="503"):
        await pool.request(peer.address, ["echo", 1], 5.0)


async def test_reconnects_after_the_peer_comes_back_on_the_same_port(
    peer: Peer, pool: LinkPool
) -> None:
    assert await pool.request(peer.address, ["echo", 1], 5.0) == 1
    await peer.stop()
    started = time.monotonic()
    with pytest.raises(errors.SiloUnreachable, match="cannot connect"):
        await pool.request(peer.address, ["echo", 2], 5.0)
    assert time.monotonic() - started < 2.0
    assert pool.connected == []
    # Right after a refused connect, requests fail at once without trying again: a crashed
    # silo's callers would otherwise each pay for a refused connection.
    attempts = pool.connect_attempts
    with pytest.raises(errors.SiloUnreachable, match="cannot connect"):
        await pool.request(peer.address, ["echo", 2], 5.0)
    assert pool.connect_attempts == attempts
    await peer.start()
    await asyncio.sleep(transport_client.RECONNECT_PAUSE)
    assert await pool.request(peer.address, ["echo", 3], 5.0) == 3
    assert pool.connections_opened == 2
    assert pool.connect_attempts == attempts + 1
    assert pool.connected == [peer.address]


async def test_forget_fails_pending_requests_and_the_next_one_reconnects(
    peer: Peer, pool: LinkPool
) -> None:
    blocked = asyncio.create_task(pool.request(peer.address, ["block", 1], 30.0))
    await peer.wait_running(1)
    await pool.forget(peer.address + "/")
    with pytest.raises(errors.SiloUnreachable, match="peer left"):
        await blocked
    assert await pool.request(peer.address, ["echo", 2], 5.0) == 2
    assert pool.connections_opened == 2
    await pool.close()
    with pytest.raises(errors.SiloUnreachable, match="closed"):
        await pool.request(peer.address, ["echo", 3], 5.0)


async def test_a_silent_peer_is_noticed_by_the_heartbeat() -> None:
    """A peer that accepted the websocket and then went dark (no FIN, no pongs)."""
    writers: list[asyncio.StreamWriter] = []

    async def accept_then_hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-key:")
        )
        magic = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept = base64.b64encode(hashlib.sha1(magic.encode()).digest()).decode()
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        writers.append(writer)

    server = await asyncio.start_server(accept_then_hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    links = LinkPool(heartbeat=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(errors.SiloUnreachable):
            await links.request(f"http://127.0.0.1:{port}", ["echo", 1], 10.0)
        assert time.monotonic() - started < 2.0
    finally:
        await links.close()
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


async def test_oversized_frames_fail_only_their_request(pool: LinkPool) -> None:
    p = Peer(max_msg_size=4096)
    await p.start()
    small = LinkPool(max_msg_size=4096)
    try:
        with pytest.raises(errors.PayloadTooLarge):  # refused by the sender
            await small.request(p.address, ["echo", b"x" * 5000], 5.0)
        with pytest.raises(errors.PayloadTooLarge):  # the reply, refused by the server
            await pool.request(p.address, ["big", 5000], 5.0)
        assert await small.request(p.address, ["echo", b"x" * 3000], 5.0) == b"x" * 3000
        assert await pool.request(p.address, ["big", 10], 5.0) == b"x" * 10
        assert small.connections_opened == pool.connections_opened == 1
    finally:
        await small.close()
        await p.stop()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"\xc1", WSCloseCode.INVALID_TEXT),  # a byte msgpack never uses
        (b"\x90\x90", WSCloseCode.INVALID_TEXT),  # trailing data after the array
        ("[[0, 1, 2]]", WSCloseCode.UNSUPPORTED_DATA),  # a text message
        (codec.pack(42), WSCloseCode.PROTOCOL_ERROR),  # not an array
        (codec.pack([[0, 1]]), WSCloseCode.PROTOCOL_ERROR),  # a frame too short
        (codec.pack([[0, True, "x"]]), WSCloseCode.PROTOCOL_ERROR),  # a bool id
        (codec.pack([[1, 1, True, "x"]]), WSCloseCode.PROTOCOL_ERROR),  # a response frame
        (codec.pack([["echo", 1]]), WSCloseCode.PROTOCOL_ERROR),
        (codec.pack([[0, 1, ["echo", 1]], "junk"]), WSCloseCode.PROTOCOL_ERROR),
        (b"\x00" * 5000, WSCloseCode.MESSAGE_TOO_BIG),  # over this server's 4096 bytes
    ],
)
async def test_malformed_input_closes_only_that_connection(
    pool: LinkPool,
    raw: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    message: bytes | str,
    code: WSCloseCode,
) -> None:
    p = Peer(max_msg_size=4096)
    await p.start()
    try:
        assert await pool.request(p.address, ["echo", "before"], 5.0) == "before"
        async with raw.ws_connect(f"{p.url}?v=1") as ws:
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(message)
            msg = await ws.receive(timeout=5.0)
            assert msg.type is WSMsgType.CLOSE
            assert ws.close_code == code
        assert p.calls == 1  # nothing of a bad message ran, not even its good first frame
        assert any(r.levelno == logging.WARNING for r in caplog.records)
        # The connection that was already open, and a new one, are both served.
        assert await pool.request(p.address, ["echo", "after"], 5.0) == "after"
        fresh = LinkPool()
        try:
            assert await fresh.request(p.address, ["echo", "fresh"], 5.0) == "fresh"
        finally:
            await fresh.close()
        assert pool.connections_opened == 1
    finally:
        await p.stop()


@pytest.mark.parametrize(
    "reply",
    [
        b"\xc1",
        codec.pack(7),
        codec.pack([[1, 0, "yes", "not a bool"]]),
        codec.pack([[0, 0, "a request, not a response"]]),
        "a text message",
    ],
)
async def test_a_peer_breaking_the_format_fails_its_requests(
    pool: LinkPool, caplog: pytest.LogCaptureFixture, reply: bytes | str
) -> None:
    """The client side checks replies as strictly as the server checks requests."""
    good = 0

    async def rogue(request: web.Request) -> web.StreamResponse:
        nonlocal good
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            ((_, request_id, payload),) = codec.unpack(msg.data)
            if payload == "good":
                good += 1
                await ws.send_bytes(codec.pack([[1, request_id, True, "fine"]]))
            elif isinstance(reply, str):
                await ws.send_str(reply)
            else:
                await ws.send_bytes(reply)
        return ws

    app = web.Application()
    app.router.add_get(LINK_ROUTE, rogue)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    address = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        with pytest.raises(errors.SiloUnreachable):
            await pool.request(address, "bad", 5.0)
        assert any(r.levelno == logging.WARNING for r in caplog.records)
        assert await pool.request(address, "good", 5.0) == "fine"
        assert pool.connections_opened == 2
    finally:
        await pool.close()
        await runner.cleanup()


@pytest.mark.parametrize("query", ["?v=2", "?v=0", "?v=", ""])
async def test_unknown_protocol_versions_are_refused(
    peer: Peer, raw: aiohttp.ClientSession, query: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        async with raw.ws_connect(f"{peer.url}{query}"):
            pass
    assert caught.value.status == 400
    assert caught.value.headers is not None
    assert caught.value.headers["Bayou-Link-Versions"] == "1"
    async with raw.get(f"{peer.url}{query}") as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["type"] == "BadRequest"
    assert "unsupported link protocol version" in body["error"]["message"]
    assert body["error"]["detail"]["supported"] == [1]
    assert peer.server.connections_opened == 0


async def test_a_client_speaking_another_version_gets_a_clear_error(
    peer: Peer, pool: LinkPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport_client, "PROTOCOL_VERSION", 2)
    with pytest.raises(errors.SiloUnreachable) as caught:
        await pool.request(peer.address, ["echo", 1], 5.0)
    assert "refused the link (HTTP 400)" in caught.value.message
    assert "unsupported link protocol version '2'" in caught.value.message
    assert caught.value.detail["versions"] == "1"


# --------------------------------------------------------------------------- the fast path


class FastPeer(Peer):
    """A peer whose ``fast`` answers ``["future", name]`` requests from futures it holds."""

    def __init__(self, **server_options: Any) -> None:
        self.futures: dict[str, asyncio.Future[Any]] = {}
        self.deadline = 5.0
        self.arrived = asyncio.Event()
        super().__init__(fast=self.fast, **server_options)

    async def future_of(self, name: str) -> asyncio.Future[Any]:
        """The future of request ``name``, once that request has arrived."""
        while name not in self.futures:
            self.arrived.clear()
            await self.arrived.wait()
        return self.futures[name]

    def fast(self, payload: Any) -> tuple[asyncio.Future[Any], float] | None:
        op, arg = payload
        if op == "fast-raise":
            raise errors.BadRequest(arg)
        if op == "fast-boom":
            raise ValueError(arg)
        if op != "future":
            return None  # the task path answers it
        loop = asyncio.get_running_loop()
        future = self.futures.setdefault(arg, loop.create_future())
        self.arrived.set()
        return future, loop.time() + self.deadline


async def test_fast_requests_are_answered_when_their_future_resolves(pool: LinkPool) -> None:
    p = FastPeer()
    await p.start()
    try:
        calls = [asyncio.create_task(pool.request(p.address, ["future", i], 5.0)) for i in "ab"]
        (await p.future_of("b")).set_result("B")
        assert await calls[1] == "B"
        (await p.future_of("a")).set_exception(errors.ActorError("no", {"exception": "X"}))
        with pytest.raises(errors.ActorError, match="no"):
            await calls[0]
        # Done already: answered at once. Not taken: the handler's task answers.
        assert await pool.request(p.address, ["future", "b"], 5.0) == "B"
        assert await pool.request(p.address, ["echo", "slow path"], 5.0) == "slow path"
        assert p.calls == 1
        with pytest.raises(errors.BadRequest, match="refused"):
            await pool.request(p.address, ["fast-raise", "refused"], 5.0)
        with pytest.raises(errors.InternalError):
            await pool.request(p.address, ["fast-boom", "secret"], 5.0)
    finally:
        await p.stop()


async def test_a_fast_request_past_its_deadline_gets_call_timeout(pool: LinkPool) -> None:
    p = FastPeer()
    p.deadline = 0.2
    await p.start()
    try:
        started = time.monotonic()
        late, later = (
            asyncio.create_task(pool.request(p.address, ["future", name], 5.0))
            for name in ("late", "later")
        )
        with pytest.raises(errors.CallTimeout, match="may still complete"):
            await late
        with pytest.raises(errors.CallTimeout):
            await later
        assert time.monotonic() - started < 2.0
        # The work goes on; its outcome, once there, is what the next request gets.
        p.futures["late"].set_result("done")
        assert await pool.request(p.address, ["future", "late"], 5.0) == "done"
        assert pool.connections_opened == 1
    finally:
        await p.stop()


async def test_fast_requests_count_against_the_bound(pool: LinkPool) -> None:
    p = FastPeer(max_concurrency=4)
    await p.start()
    try:
        calls = [
            asyncio.create_task(pool.request(p.address, ["future", str(i)], 5.0)) for i in range(10)
        ]
        await asyncio.sleep(0.2)
        assert len(p.futures) == 4  # the reader waits for room
        for i in range(10):
            (await p.future_of(str(i))).set_result(i)
        assert await asyncio.gather(*calls) == list(range(10))
    finally:
        await p.stop()


async def test_draining_waits_for_fast_requests(pool: LinkPool) -> None:
    p = FastPeer()
    await p.start()
    try:
        call = asyncio.create_task(pool.request(p.address, ["future", "x"], 10.0))
        future = await p.future_of("x")
        closing = asyncio.create_task(p.server.close(timeout=5.0))
        await asyncio.sleep(0.05)
        assert not closing.done()
        future.set_result("in flight")
        assert await call == "in flight"
        await closing
    finally:
        await p.stop()
