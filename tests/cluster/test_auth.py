"""The shared secret: required on the client API and on silo links, open health probes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bayou import Client, Unauthorized, Unavailable
from bayou.wire import partition_of
from tests.cluster.harness import SiloProcess
from tests.redis_server import RedisServer

SECRET = "s3cret-for-tests"
AUTH = {"Authorization": f"Bearer {SECRET}"}


@pytest.fixture
async def secured(
    tmp_path: Path, redis_server: RedisServer, cluster_name: str
) -> AsyncIterator[list[SiloProcess]]:
    silos = [
        SiloProcess(
            tmp_path / f"s{i}.db",
            redis_url=redis_server.url,
            cluster=cluster_name,
            env={"BAYOU_SECRET": SECRET},
        )
        for i in range(2)
    ]
    for silo in silos:
        await silo.start()
    try:
        yield silos
    finally:
        for silo in silos:
            await silo.kill()


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        body = await resp.json(content_type=None) if resp.content_type.endswith("json") else None
        return resp.status, body


async def test_missing_or_wrong_secret_is_401_and_the_right_one_works(
    secured: list[SiloProcess],
) -> None:
    silo = secured[0]
    for path in ("/v1/cluster", "/metrics", "/dashboard", "/v1/actors/counter/a"):
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET}):
            status, body = await get(silo.url + path, headers)
            assert status == 401, (path, headers)
            if body is not None:
                assert body["error"]["type"] == "Unauthorized"
    for path in ("/healthz", "/readyz"):
        assert (await get(silo.url + path))[0] == 200  # probes need no secret
    assert (await get(silo.url + "/v1/cluster", AUTH))[0] == 200
    async with Client(silo.url, transport="http") as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.call("counter", "a", "add", {"n": 1})
    async with Client(silo.url, transport="link") as anonymous:
        started = time.monotonic()
        with pytest.raises(Unauthorized, match="401"):  # the link upgrade itself is refused
            await anonymous.call("counter", "a", "add", {"n": 1})
        assert time.monotonic() - started < 5  # terminal: not retried until the deadline
    for transport in ("link", "http"):
        async with Client([s.url for s in secured], secret=SECRET, transport=transport) as client:
            assert await client.call("counter", f"k-{transport}", "add", {"n": 2}) == 2


async def test_a_silo_without_the_secret_cannot_link_to_the_cluster(
    secured: list[SiloProcess], tmp_path: Path, redis_server: RedisServer
) -> None:
    outsider = SiloProcess(
        tmp_path / "outsider.db", redis_url=redis_server.url, cluster=secured[0].cluster
    )
    await outsider.start()
    try:
        _, view = await get(secured[0].url + "/v1/cluster", AUTH)
        deadline = asyncio.get_running_loop().time() + 10
        while sum(m["status"] == "active" for m in view["members"]) < 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
            _, view = await get(secured[0].url + "/v1/cluster", AUTH)
        outsider_id = next(
            m["id"] for m in view["members"] if m["address"].endswith(f":{outsider.port}")
        )
        members = [m["id"] for m in view["members"]]
        key = next(
            k
            for k in (f"x{i}" for i in range(5000))
            if members[view["owners"][partition_of("counter", k, view["partitions"])]]
            not in (outsider_id,)
        )
        # Calls that reach the outsider for actors the secured silos own must be forwarded
        # over a link, and the secured silos refuse its links.
        async with Client(outsider.url, routing=False, transport="http", max_attempts=1,
                          timeout=5) as via_outsider:  # fmt: skip
            with pytest.raises(Unavailable, match="401"):
                await via_outsider.call("counter", key, "add", {"n": 1})
    finally:
        await outsider.kill()
