"""Calls and tells skip aiohttp's router (``direct_routes``); every request must still be
answered exactly as the router would answer it. One silo is served twice over loopback,
with and without the direct routes, and each request goes to both."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bayou import App, SiloSettings
from bayou.runtime.http import Served, build_http_app, direct_routes
from bayou.runtime.http_server import HttpRunner
from bayou.runtime.silo import Silo
from bayou.storage.memory import MemoryStorage
from tests.unit.actors import Recorder

SECRET = "s3cret"
AUTH = {"Authorization": f"Bearer {SECRET}"}
MAX_BODY = 4096
EXPECTING = {"Expect": "100-continue", "Idempotency-Key": "expected"}


@dataclass
class TwoServers:
    """Base URLs of one silo's app served with the direct routes and without them."""

    direct: str
    routed: str
    via_router: list[str]  # paths the direct server handed to the router


async def _serve(runner: HttpRunner) -> str:
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


@pytest.fixture
async def served() -> AsyncIterator[TwoServers]:
    app = App([Recorder], SiloSettings(max_body_bytes=MAX_BODY))
    silo = Silo(app, MemoryStorage(), port=0, secret=SECRET)
    await silo.start(serve_http=False)
    for key, n in (("a/b", 7), ("a%b", 11), ("\N{SNOWMAN}", 13)):  # keys told apart by state
        await silo.call("recorder", key, "add", {"n": n})
    via_router: list[str] = []

    def counting(app: web.Application, routed: Served) -> Served:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            via_router.append(request.raw_path)
            return await routed(request)

        return direct_routes(app, handle)

    direct = HttpRunner(build_http_app(silo), front=counting, access_log=None)
    routed = HttpRunner(build_http_app(silo), access_log=None)
    try:
        yield TwoServers(await _serve(direct), await _serve(routed), via_router)
    finally:
        await direct.cleanup()
        await routed.cleanup()
        await silo.stop()


async def _answer(
    session: aiohttp.ClientSession, base: str, method: str, path: str, body: bytes,
    headers: dict[str, str],
) -> tuple[int, str, Any, bool]:  # fmt: skip
    async with session.request(method, base + path, data=body, headers=headers) as response:
        raw = await response.read()
        ring = "Bayou-Ring-Version" in response.headers
        return response.status, response.content_type, json.loads(raw) if raw else None, ring


# (method, path, body, extra headers, taken directly)
CASES: list[tuple[str, str, bytes, dict[str, str], bool]] = [
    ("POST", "/v1/actors/recorder/a/read", b"", {}, True),
    ("POST", "/v1/actors/recorder/a%2Fb/read", b"", {}, True),
    ("POST", "/v1/actors/recorder/a%25b/read", b"", {}, True),
    ("POST", "/v1/actors/recorder/%E2%98%83/read", b"", {}, True),
    ("POST", "/v1/actors/recorder/a%09b/read", b"", {}, True),  # a bad key: 400
    ("POST", "/v1/actors/nope/a/read", b"", {}, True),
    ("POST", "/v1/actors/recorder/a/nope", b"", {}, True),
    ("POST", "/v1/actors/recorder/a/add", b'{"n": "x"}', {}, True),
    ("POST", "/v1/actors/recorder/a/add", b'{"n": ', {}, True),
    ("POST", "/v1/actors/recorder/a/add", b'{"n": 1}', {"Content-Type": "text/plain"}, True),
    ("POST", "/v1/actors/recorder/a/read", b"{}", {"Content-Type": "text/json"}, True),
    ("POST", "/v1/actors/recorder/a/read", b"{}", {"Content-Type": "Application/JSON"}, True),
    ("POST", "/v1/actors/recorder/a/read", b"{}", {"Content-Type": "x/y+json; v=1"}, True),
    ("POST", "/v1/actors/recorder/a/read", b"\x80", {"Content-Type": "application/msgpack"}, True),
    ("POST", "/v1/actors/recorder/a/read", b"[]", {"Content-Type": ""}, True),
    ("POST", "/v1/actors/recorder/a/add", b'{"n": 1}', {"Bayou-Timeout": "soon"}, True),
    ("POST", "/v1/actors/recorder/a/add", b" " * (MAX_BODY + 1), {}, True),
    ("POST", "/v1/actors/recorder/a/add", b'{"n": 1}', {"Idempotency-Key": "once"}, True),
    ("POST", "/v1/actors/recorder/a/add/tell", b'{"n": 1}', {"Idempotency-Key": "t1"}, True),
    ("POST", "/v1/actors/recorder/a/add", b'{"n": 1}', {"Authorization": "Bearer no"}, True),
    # Not theirs, or not plainly: the router answers these on both servers.
    ("POST", "/v1/actors/recorder/a%7Bb/read", b"", {}, False),
    ("POST", "/v1/actors/recorder//read", b"", {}, False),
    ("POST", "/v1/actors/recorder/a/read/", b"", {}, False),
    ("POST", "/v1/actors/recorder/a/topics/tell", b'{"value": 1}', {}, False),
    ("POST", "/v1/actors/recorder/a/add/tell/x", b"", {}, False),
    ("POST", "/v1/actors/recorder/a/add", b'{"n": 1}', EXPECTING, False),
    ("GET", "/v1/actors/recorder/a/read", b"", {}, False),
    ("POST", "/v1/actors/recorder", b"", {}, False),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "direct"), CASES)
async def test_direct_and_routed_answer_alike(
    served: TwoServers, method: str, path: str, body: bytes, headers: dict[str, str], direct: bool
) -> None:
    async with aiohttp.ClientSession(skip_auto_headers={"Content-Type"}) as session:
        sent = AUTH | headers
        by_direct = await _answer(session, served.direct, method, path, body, sent)
        by_router = await _answer(session, served.routed, method, path, body, sent)
    assert by_direct == by_router
    status, content_type, _, ring = by_direct
    assert content_type == "application/json"
    assert ring or status >= 400  # every answer of the app carries the ring version
    assert (path not in served.via_router) is direct, served.via_router


async def test_the_direct_call_is_the_same_call(served: TwoServers) -> None:
    """A call made through one server is the one the other sees (one silo behind both)."""
    path = "/v1/actors/recorder/shared/add"
    async with aiohttp.ClientSession() as session:
        first = await _answer(session, served.direct, "POST", path, b'{"n": 2}', AUTH)
        second = await _answer(session, served.routed, "POST", path, b'{"n": 3}', AUTH)
    assert (first[0], first[2], second[0], second[2]) == (200, {"result": 2}, 200, {"result": 5})
