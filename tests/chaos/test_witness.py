"""The witness sees a double activation when there is one, and none when there is none.

Two silos on separate embedded stores know nothing of each other, so each activates the
same actor: exactly the failure fencing exists to prevent, made on purpose."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bayou import Client
from tests.chaos.actors import CONFLICTS, WITNESS_ENV
from tests.cluster.harness import SiloProcess
from tests.redis_server import RedisServer

pytestmark = pytest.mark.cluster


@pytest.fixture
async def two_silos(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[SiloProcess]]:
    silos = [
        SiloProcess(
            tmp_path / f"alone{i}.db",
            app="tests.chaos.actors:app",
            env={WITNESS_ENV: redis_server.url},
        )
        for i in range(2)
    ]
    try:
        await asyncio.gather(*(silo.start() for silo in silos))
        yield silos
    finally:
        for silo in silos:
            await silo.kill()


async def hammer(url: str, key: str, adds: int) -> None:
    async with Client(url, routing=False, timeout=10) as client:
        ref = client.ref("chaos-counter", key)
        await asyncio.gather(*(ref.add(n=1) for _ in range(adds)))


async def conflicts_of(redis_url: str, key: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        raw = await client.lrange(CONFLICTS, 0, -1)
    finally:
        await client.aclose()
    return sum(1 for item in raw if json.loads(item)["key"] == key)


async def test_one_activation_is_not_a_conflict(
    two_silos: list[SiloProcess], redis_server: RedisServer
) -> None:
    key = f"single-{uuid.uuid4().hex[:8]}"
    await asyncio.gather(*(hammer(two_silos[0].url, key, 150) for _ in range(2)))
    assert await conflicts_of(redis_server.url, key) == 0


async def test_two_activations_of_one_actor_are_seen(
    two_silos: list[SiloProcess], redis_server: RedisServer
) -> None:
    key = f"double-{uuid.uuid4().hex[:8]}"
    for _ in range(5):
        await asyncio.gather(*(hammer(silo.url, key, 150) for silo in two_silos))
        if await conflicts_of(redis_server.url, key):
            break
    assert await conflicts_of(redis_server.url, key) > 0
