"""The cluster tests' witness (tests/cluster/witness.py) must catch a second activation and
only that: a lock held by another activation is a violation; a lock its own activation left
behind, or one that lapsed as it looked, is not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from bayou import ActorError, App
from bayou.runtime.silo import Silo
from bayou.testing import local_silo
from tests.cluster import witness
from tests.cluster.witness import CONFLICTS, STALE_OWN, VIOLATIONS, Witness, lock_key
from tests.redis_server import RedisServer

KEYS = (VIOLATIONS, CONFLICTS, STALE_OWN, lock_key("w"))


@pytest.fixture
async def store(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[redis.Redis]:
    # A database of its own: the witness's keys are not namespaced.
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    monkeypatch.setenv("BAYOU_WITNESS_REDIS", url)
    monkeypatch.setattr(witness, "_client", None)  # its client is per process and per loop
    client = redis.Redis.from_url(url)
    await client.delete(*KEYS)
    try:
        yield client
    finally:
        await client.delete(*KEYS)
        if witness._client is not None:
            await witness._client.aclose()
        await client.aclose()


def _activation_id(silo: Silo) -> str:
    activation = silo.catalog.peek("witness", "w")
    assert activation is not None
    instance = activation.instance
    assert isinstance(instance, Witness)
    return instance.activation_id


async def test_a_lock_held_by_another_activation_is_a_violation(store: redis.Redis) -> None:
    async with local_silo(App([Witness])) as silo:
        assert await silo.call("witness", "w", "add", {"n": 1}) == 1
        await store.set(lock_key("w"), "another-activation", px=60_000)
        with pytest.raises(ActorError, match="another-activation"):
            await silo.call("witness", "w", "add", {"n": 1})
        taker = _activation_id(silo)
    assert int(await store.get(VIOLATIONS) or 0) == 1
    [conflict] = [json.loads(c) for c in await store.lrange(CONFLICTS, 0, -1)]
    assert (conflict["holder"], conflict["taker"]) == ("another-activation", taker)


async def test_its_own_stale_lock_is_not_a_violation(store: redis.Redis) -> None:
    async with local_silo(App([Witness])) as silo:
        assert await silo.call("witness", "w", "add", {"n": 1}) == 1
        # As if the last release had failed, or a retried SET had found its own first one.
        await store.set(lock_key("w"), _activation_id(silo), px=60_000)
        assert await silo.call("witness", "w", "add", {"n": 1}) == 2
        assert await store.get(lock_key("w")) is None  # released after that turn as usual
    assert int(await store.get(VIOLATIONS) or 0) == 0
    assert int(await store.get(STALE_OWN) or 0) == 1
