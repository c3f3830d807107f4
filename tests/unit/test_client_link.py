"""The client's link transport: against a real in-process silo, and against a toy link
server with fault injection, so retries, keys, deadlines and error mapping are checked to
behave exactly as over HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel

from bayou import App, errors
from bayou.client import Client
from bayou.model import Actor, actor, query
from bayou.runtime.silo import Silo
from bayou.runtime.transport import LinkServer
from bayou.testing import local_silo

# --------------------------------------------------------------------------- a real silo


class Tally(BaseModel):
    value: int = 0


@actor("tally")
class TallyActor(Actor[Tally]):
    async def add(self, n: int) -> int:
        self.state.value += n
        return self.state.value

    async def refuse(self, n: int) -> int:
        raise ValueError(f"no {n}")

    async def nap(self, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return self.state.value

    @query
    async def get(self) -> int:
        return self.state.value


APP = App([TallyActor])


@pytest.fixture
async def silo() -> AsyncIterator[Silo]:
    async with local_silo(APP, http=True) as running:
        yield running


async def test_auto_uses_the_link_where_the_silo_serves_it(silo: Silo) -> None:
    async with Client(silo.address, transport="auto") as client:
        ref = client.ref(TallyActor, "a")
        assert [await ref.add(2), await ref.add(3), await ref.get()] == [2, 5, 5]
        assert client._link is not None and client._link.pool.requests_sent == 3
    assert silo.router.client_requests == 3  # every call arrived over the link, none over HTTP


async def test_link_and_http_give_the_same_answers(silo: Silo) -> None:
    async with (
        Client(silo.address, transport="link") as link,
        Client(silo.address, transport="http") as http,
    ):
        assert await link.call("tally", "k", "add", {"n": 1}) == 1
        assert await http.call("tally", "k", "add", {"n": 1}) == 2
        assert await link.ref(TallyActor, "k").get() == await http.ref(TallyActor, "k").get()
        assert http._link is None


async def test_tells_are_stored_then_applied(silo: Silo) -> None:
    async with Client(silo.address, transport="link") as client:
        ref = client.ref(TallyActor, "t")
        message_id = await ref.options(idempotency_key="tell-1").tell.add(4)
        assert message_id == "tell-1"
        assert await ref.options(idempotency_key="tell-1").tell.add(4) == "tell-1"
        for _ in range(200):
            if await ref.get() == 4:
                break
            await asyncio.sleep(0.01)
        assert await ref.get() == 4  # applied once, though told twice


@pytest.mark.parametrize(
    ("method", "args", "cls"),
    [
        ("nope", {}, errors.UnknownMethod),
        ("add", {"n": "x"}, errors.InvalidArguments),
        ("refuse", {"n": 1}, errors.ActorError),
    ],
)
async def test_errors_are_the_same_classes_as_over_http(
    silo: Silo, method: str, args: dict[str, Any], cls: type[errors.BayouError]
) -> None:
    caught = []
    for transport in ("link", "http"):
        async with Client(silo.address, transport=transport) as client:
            with pytest.raises(cls) as info:
                await client.call("tally", "e", method, args)
            caught.append((type(info.value), info.value.message, info.value.detail))
    assert caught[0] == caught[1]
    async with Client(silo.address, transport="link") as client:
        with pytest.raises(errors.UnknownActorType):
            await client.call("nobody", "e", "add", {"n": 1})


async def test_an_idempotency_key_applies_a_call_once(silo: Silo) -> None:
    async with Client(silo.address, transport="link") as client:
        once = client.ref(TallyActor, "i").options(idempotency_key="order-17")
        assert await once.add(5) == 5
        assert await once.add(5) == 5
        assert await client.ref(TallyActor, "i").get() == 5
        with pytest.raises(errors.IdempotencyKeyReused):
            await once.add(6)


async def test_a_call_past_its_deadline_is_a_call_timeout(silo: Silo) -> None:
    async with Client(silo.address, transport="link", timeout=0.3) as client:
        with pytest.raises(errors.CallTimeout) as info:
            await client.ref(TallyActor, "slow").nap(2.0)
    assert isinstance(info.value, TimeoutError)
    assert info.value.detail["idempotency_key"]


async def test_a_dead_port_is_silo_unreachable_after_bounded_attempts() -> None:
    async with local_silo(APP, http=True) as silo:
        address = silo.address
    async with Client(address, transport="link", max_attempts=2, timeout=5.0) as client:
        with pytest.raises(errors.SiloUnreachable) as info:
            await client.call("tally", "x", "add", {"n": 1})
    assert info.value.detail["attempts"] == 2


# --------------------------------------------------------------------------- a toy link


@dataclass
class ToyLink:
    """A link server with one counter and injectable faults, consumed one per request."""

    faults: list[str] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)
    applied: dict[str, int] = field(default_factory=dict)
    server: LinkServer | None = None
    url: str = ""

    async def handle(self, payload: Any) -> Any:
        self.seen.append(payload)
        fault = self.faults.pop(0) if self.faults else None
        if fault == "503":
            raise errors.Unavailable("starting")
        if fault == "drop":
            assert self.server is not None
            for connection in list(self.server._connections):
                await connection.ws.close()
            await asyncio.sleep(1)
        idem = payload["idem"]
        if idem not in self.applied:
            self.applied[idem] = payload["args"]["n"]
        return self.applied[idem]


@pytest.fixture
async def toy() -> AsyncIterator[ToyLink]:
    toy = ToyLink()
    toy.server = LinkServer(toy.handle)
    app = web.Application()
    toy.server.mount(app)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    toy.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield toy
    finally:
        await runner.cleanup()


async def test_retryable_answers_are_retried_with_the_same_key(toy: ToyLink) -> None:
    toy.faults = ["503", "503"]
    async with Client(toy.url, transport="link", routing=False) as client:
        assert await client.call("tally", "r", "add", {"n": 7}) == 7
    keys = {seen["idem"] for seen in toy.seen}
    assert len(toy.seen) == 3 and len(keys) == 1 and None not in keys
    assert all(seen["hops"] == 0 and seen["op"] == "call" for seen in toy.seen)


async def test_a_dropped_link_is_retried_and_answered_from_the_record(toy: ToyLink) -> None:
    toy.faults = ["drop"]
    async with Client(toy.url, transport="link", routing=False) as client:
        assert await client.call("tally", "d", "add", {"n": 3}) == 3
    assert len(toy.seen) == 2 and toy.seen[0]["idem"] == toy.seen[1]["idem"]


async def test_retryable_answers_until_attempts_run_out_raise_that_answer(toy: ToyLink) -> None:
    toy.faults = ["503"] * 3
    async with Client(toy.url, transport="link", routing=False, max_attempts=3) as client:
        with pytest.raises(errors.Unavailable) as info:
            await client.call("tally", "u", "add", {"n": 1})
    assert type(info.value) is errors.Unavailable and len(toy.seen) == 3


# --------------------------------------------------------------------------- fallback


@pytest.fixture
async def http_only() -> AsyncIterator[str]:
    """A server that speaks the call route over HTTP but has no link."""

    async def call(request: web.Request) -> web.Response:
        return web.json_response({"result": "over http"})

    app = web.Application()
    app.router.add_post("/v1/actors/{type}/{key}/{method}", call)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_auto_falls_back_to_http_where_the_link_is_refused(http_only: str) -> None:
    async with Client(http_only, routing=False, transport="auto") as client:
        assert await client.call("tally", "f", "add", {"n": 1}) == "over http"
        assert await client.call("tally", "f", "add", {"n": 1}) == "over http"
        assert client._link is not None and not client._link.serves(http_only)


async def test_link_only_reports_a_refused_link(http_only: str) -> None:
    async with Client(http_only, transport="link", routing=False, max_attempts=1) as client:
        with pytest.raises(errors.SiloUnreachable):
            await client.call("tally", "f", "add", {"n": 1})


def test_unknown_transports_are_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        Client("http://h", transport="carrier-pigeon")


def test_the_link_package_imports_neither_runtime_nor_client() -> None:
    code = "import sys, json, bayou.link; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m for m in json.loads(out.stdout) if m.startswith("bayou")}
    assert not {m for m in loaded if m.startswith(("bayou.runtime", "bayou.client"))}
