"""Events, streams, reminders and actor-to-actor tells over real HTTP, through SIGKILL."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bayou import Client, NotFound
from bayou.client.channels import get_event, read_stream
from tests.cluster.harness import SiloProcess


async def request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as resp,
    ):
        raw = await resp.read()
        return resp.status, json.loads(raw) if raw else None


async def test_events_over_http_and_the_client(silo: SiloProcess) -> None:
    base = f"{silo.url}/v1/actors/publisher/p/events/progress"
    status, body = await request("GET", base)
    assert status == 404 and body["error"]["type"] == "NotFound"
    async with Client(silo.url) as client:
        waiting = asyncio.ensure_future(get_event(client, "publisher", "p", "progress", wait=5))
        await asyncio.sleep(0.1)
        await client.call("publisher", "p", "progress", {"percent": 30})
        assert await asyncio.wait_for(waiting, 5) == {"percent": 30}
        assert await get_event(client, "publisher", "p", "nothing", default=None) is None
        with pytest.raises(NotFound):
            await get_event(client, "publisher", "p", "nothing")
    assert await request("GET", base + "?wait=0.1") == (200, {"value": {"percent": 30}})
    status, body = await request("GET", base + "?wait=lots")
    assert status == 400 and body["error"]["detail"] == {"field": "wait"}
    status, body = await request("GET", f"{silo.url}/v1/actors/nope/p/events/x")
    assert status == 404 and body["error"]["type"] == "UnknownActorType"


async def test_streams_as_ndjson_and_server_sent_events(silo: SiloProcess) -> None:
    async with Client(silo.url) as client:
        await client.call("publisher", "s", "emit", {"words": ["one", "two"]})
        later = asyncio.ensure_future(_emit_later(client))
        got = [
            (offset, item) async for offset, item in read_stream(client, "publisher", "s", "log")
        ]
        await later
    assert got == [(0, "one"), (1, "two"), (2, "three"), (3, "four")]
    url = f"{silo.url}/v1/actors/publisher/s/streams/log?after=1"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.headers["Content-Type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in (await resp.text()).splitlines()]
        assert lines == [{"offset": 2, "item": "three"}, {"offset": 3, "item": "four"},
                         {"closed": True}]  # fmt: skip
        async with session.get(url, headers={"Accept": "text/event-stream"}) as resp:
            text = await resp.text()
        assert text.startswith('id: 2\ndata: "three"\n\nid: 3\ndata: "four"\n\nevent: end')
    status, body = await request(
        "GET", f"{silo.url}/v1/actors/publisher/s/streams/log/items?after=2"
    )
    assert (status, body) == (200, {"items": [[3, "four"]], "closed": True, "next": 4})


async def test_a_stream_response_ends_after_wait_seconds_while_the_stream_is_open(
    silo: SiloProcess,
) -> None:
    async with Client(silo.url) as client:
        await client.call("publisher", "open", "emit", {"words": ["one"]})
    url = f"{silo.url}/v1/actors/publisher/open/streams/log"
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.get(url + "?wait=0.5") as resp:
            lines = [json.loads(line) for line in (await resp.text()).splitlines()]
        assert resp.status == 200 and lines == [{"offset": 0, "item": "one"}]  # not closed
        assert 0.4 < time.monotonic() - started < 10
        async with session.get(url + "?after=0&wait=0") as resp:
            assert (resp.status, await resp.text()) == (200, "")
    for wait in ("-1", "301", "soon"):
        status, body = await request("GET", f"{url}?wait={wait}")
        assert status == 400 and body["error"]["detail"] == {"field": "wait"}, wait


async def _emit_later(client: Client) -> None:
    await asyncio.sleep(0.1)
    await client.call("publisher", "s", "emit", {"words": ["three"]})
    await client.call("publisher", "s", "emit", {"words": ["four"], "close": True})


async def test_reminders_over_http(silo: SiloProcess) -> None:
    base = f"{silo.url}/v1/actors/alarm/h/reminders"
    status, body = await request("PUT", base + "/soon", {"method": "ring", "args": {"label": "x"},
                                                        "due_in": 0.5})  # fmt: skip
    assert status == 200 and body["method"] == "ring"
    status, body = await request("PUT", base + "/bad", {"method": "rings", "due_in": 1})
    assert status == 422 and "query" in body["error"]["message"]
    status, body = await request("PUT", base + "/bad", {"method": "ring", "args": {"label": "x"},
                                                       "due_in": 1, "period": 0.1})  # fmt: skip
    assert status == 422 and body["error"]["detail"][0]["field"] == "period"
    status, body = await request("PUT", base + "/keep", {"method": "ring", "args": {"label": "k"},
                                                        "due_in": 3600, "period": 60})  # fmt: skip
    assert status == 200
    async with Client(silo.url) as client:
        deadline = time.monotonic() + 10
        while not await client.call("alarm", "h", "rings", {}):
            assert time.monotonic() < deadline, "the reminder never fired"
            await asyncio.sleep(0.1)
    status, body = await request("GET", base)
    assert [r["name"] for r in body["reminders"]] == ["keep"]
    assert await request("DELETE", base + "/keep") == (200, {"cancelled": True})
    assert await request("DELETE", base + "/keep") == (200, {"cancelled": False})


async def test_patterns_survive_sigkill(tmp_path: Path) -> None:
    """A stream read across a crash yields every item once, in order; tells sent from a
    handler are applied exactly once; a reminder due during the outage fires once."""
    silo = SiloProcess(tmp_path / "silo.db")
    await silo.start()
    try:
        async with Client(silo.url, timeout=20) as client:
            await client.call("alarm", "k", "arm", {"name": "outage", "due_in": 1.5})
            reader = asyncio.ensure_future(_collect(client))
            fanned = 0
            for round_ in range(40):
                await client.call("publisher", "k", "emit", {"words": [f"w{round_}"]})
                fanned = await client.call("source", "k", "fan_out", {"count": 2, "sink": "k"})
                if round_ == 20:
                    await silo.kill()
                    await asyncio.sleep(2.0)  # the reminder falls due while the silo is down
                    await silo.start()
            await client.call("publisher", "k", "emit", {"words": [], "close": True})
            items = await asyncio.wait_for(reader, 30)
            assert items == [(i, f"w{i}") for i in range(40)]
            deadline = time.monotonic() + 10
            while (await client.call("sink", "k", "read", {}))["total"] < fanned:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            sink = await client.call("sink", "k", "read", {})
            assert sink["total"] == fanned == 80
            assert len(set(sink["seen"])) == 80
            while not (rings := await client.call("alarm", "k", "rings", {})):
                assert time.monotonic() < deadline, "the reminder never fired"
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)  # a few more polls: it must not fire again
            rings = await client.call("alarm", "k", "rings", {})
            assert len(rings) == 1 and rings[0].startswith("outage@")
    finally:
        await silo.kill()


async def _collect(client: Client) -> list[tuple[int, Any]]:
    return [pair async for pair in read_stream(client, "publisher", "k", "log")]
