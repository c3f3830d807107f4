"""A cluster of real silo processes on one real redis-server, and a checkable load on it."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import aiohttp

from bayou import BayouError, Client
from bayou.wire import partition_of
from tests.cluster.harness import SiloProcess
from tests.redis_server import RedisServer


class Cluster:
    """Silo processes sharing one Redis and cluster name; every one killed at ``close``.

    ``storage_url`` puts the silos' storage and membership elsewhere (a Redis Cluster, a
    Sentinel-managed primary); ``redis`` then serves only the witness's locks.
    """

    def __init__(
        self, directory: Path, redis: RedisServer, name: str, storage_url: str | None = None
    ) -> None:
        self.directory = directory
        self.redis = redis
        self.name = name
        self.storage_url = storage_url or redis.url
        self.silos: list[SiloProcess] = []
        self.retired: list[SiloProcess] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    @property
    def urls(self) -> list[str]:
        return [silo.url for silo in self.silos]

    async def add_silo(self) -> SiloProcess:
        silo = SiloProcess(
            self.directory / f"silo{len(self.silos) + len(self.retired)}.db",
            redis_url=self.storage_url,
            cluster=self.name,
            witness_url=self.redis.url,
        )
        await silo.start()
        self.silos.append(silo)
        return silo

    async def start(self, count: int) -> None:
        for _ in range(count):
            await self.add_silo()
        await self.wait_settled(count)

    def retire(self, silo: SiloProcess) -> None:
        self.silos.remove(silo)
        self.retired.append(silo)

    async def view(self, silo: SiloProcess | None = None) -> dict[str, Any]:
        target = silo or self.silos[0]
        async with self.session.get(target.url + "/v1/cluster") as resp:
            body: dict[str, Any] = await resp.json()
            return body

    async def views(self) -> list[dict[str, Any]]:
        return [await self.view(silo) for silo in self.silos]

    async def wait_settled(self, active: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Until every live silo routes by the same ring of ``active`` active silos."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                views = await self.views()
            except aiohttp.ClientError:
                views = []
            if views:
                versions = {v["ring_version"] for v in views}
                counts = [sum(m["status"] == "active" for m in v["members"]) for v in views]
                if len(versions) == 1 and all(c == active for c in counts):
                    return views
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster did not settle on {active} silos: {views!r:.2000}")
            await asyncio.sleep(0.05)

    def owner_of(self, view: dict[str, Any], type_name: str, key: str) -> str:
        index = view["owners"][partition_of(type_name, key, view["partitions"])]
        member: str = view["members"][index]["id"]
        return member

    async def close(self) -> None:
        for silo in self.silos + self.retired:
            await silo.kill()
        if self._session is not None:
            await self._session.close()


class Load:
    """Client tasks adding 1 to counters, each add with its own idempotency key.

    Every add is retried with the same key until it is acknowledged (or the load's
    deadline passes, which fails the test): afterwards each counter must equal the number
    of adds sent to it, exactly.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        type_name: str = "witness",
        actors: int = 120,
        clients: int = 6,
        deadline: float = 90.0,
        seed: int = 1,
    ) -> None:
        self.urls = urls
        self.type_name = type_name
        self.keys = [f"a{i}" for i in range(actors)]
        self.clients = clients
        self.deadline = time.monotonic() + deadline
        self.rng = random.Random(seed)
        self.sent: Tally[str] = Tally()
        self.acked: Tally[str] = Tally()
        self.failures: Tally[str] = Tally()
        self.unfinished = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for index in range(self.clients):
            self._tasks.append(asyncio.ensure_future(self._client(index)))

    async def _client(self, index: int) -> None:
        rng = random.Random(self.rng.random())
        async with Client(self.urls, timeout=5.0, max_attempts=4) as client:
            op = 0
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                key = rng.choice(self.keys)
                idem = f"c{index}-op{op}"
                op += 1
                self.sent[key] += 1
                ref = client.ref(self.type_name, key).options(idempotency_key=idem)
                while True:
                    try:
                        await ref.add(n=1)
                    except (BayouError, OSError) as exc:
                        self.failures[type(exc).__name__] += 1
                        if time.monotonic() > self.deadline:
                            self.unfinished += 1
                            break
                        await asyncio.sleep(0.05)
                        continue
                    self.acked[key] += 1
                    break

    @property
    def total_acked(self) -> int:
        return sum(self.acked.values())

    async def wait_acked(self, at_least: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.total_acked < at_least:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load stuck at {self.total_acked} acks")
            await asyncio.sleep(0.01)

    async def finish(self) -> None:
        """Stop issuing adds; wait until every add in flight is acknowledged."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def values(self, url: str) -> dict[str, int]:
        async with Client(url, timeout=10.0) as client:
            results = await asyncio.gather(
                *(client.ref(self.type_name, key).get() for key in self.keys)
            )
        return dict(zip(self.keys, results, strict=True))

    async def check(self, url: str) -> None:
        """Nothing acknowledged lost, nothing applied twice."""
        assert self.unfinished == 0, f"{self.unfinished} adds never acknowledged"
        assert self.acked == self.sent
        values = await self.values(url)
        expected = {key: self.acked.get(key, 0) for key in self.keys}
        assert values == expected


async def witness_violations(redis_url: str) -> int:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        raw = await client.get("witness:violations")
        seen = await client.lrange("witness:conflicts", 0, -1)
        stale_own = await client.get("witness:stale_own")
    finally:
        await client.aclose()
    for conflict in seen:  # shown with a failing test's output: which activations met
        print(f"witness conflict: {conflict!r}")
    print(f"witness: {int(stale_own or 0)} turns found their own activation's lock")
    return int(raw or 0)
