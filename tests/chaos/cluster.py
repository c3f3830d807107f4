"""A cluster of real silo processes whose every connection crosses a breakable proxy.

Network layout (all loopback, one proxy helper process, see ``proxy.py``):

- silo *i* binds ``127.0.0.2:P`` and advertises ``127.0.0.1:P``, where its own proxy
  listens and forwards to ``127.0.0.2:P``. The same port on two loopback addresses is what
  makes the advertised address a proxy without a runtime option for an advertised port.
  Peers, clients and the front door all reach the silo through that proxy;
- silo *i* reaches Redis through a proxy of its own (its ``--redis`` URL points there);
- clients enter through a front door (a round-robin proxy over the silos' proxies, like a
  Kubernetes Service) and then follow the ring to each actor's owner;
- the witness and this harness reach Redis and the silos directly: observers are never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from tests.chaos.actors import LOG_LEVEL_ENV, WITNESS_ENV
from tests.chaos.proxy import ProxyControl
from tests.cluster.harness import ROOT, SiloProcess
from tests.redis_server import RedisServer

SILO_HOST = "127.0.0.2"  # where silos bind; their proxies take 127.0.0.1 on the same port
APP = "tests.chaos.actors:app"
# For helper processes (workload clients): the checkout on the path, whatever the cwd.
ROOT_ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def free_port_pair() -> int:
    """A port free on 127.0.0.1 and on ``SILO_HOST`` (the proxy and the silo behind it)."""
    for _ in range(100):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port: int = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind((SILO_HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free on both loopback addresses")


@dataclass(eq=False)
class ChaosSilo:
    index: int
    process: SiloProcess
    silo_id: str = ""
    started: float = 0.0
    exited: float | None = None
    exit_code: int | None = None
    # What we did to it, so the supervisor can tell an expected exit from a crash.
    doomed: str | None = None  # "kill", "term", or None
    frozen: bool = False
    isolated: bool = False
    hung: str | None = None  # why the harness aborted it (SIGABRT: stacks in its log)
    fenced_writes: int = 0

    @property
    def name(self) -> str:
        return f"silo{self.index}"

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def direct(self) -> str:
        """The silo's own address, behind its proxy: for observers only."""
        return f"http://{SILO_HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def alive(self) -> bool:
        return self.process.proc is not None and self.process.proc.poll() is None


@dataclass
class Exit:
    silo: str
    silo_id: str
    code: int
    at: float
    expected: bool
    reason: str
    hung: bool = False  # aborted by the harness for hanging: an anomaly, not a crash


@dataclass
class ChaosCluster:
    directory: Path
    name: str = "chaos"
    env: dict[str, str] = field(default_factory=dict)
    redis: RedisServer = field(init=False)
    proxies: ProxyControl = field(init=False)
    silos: list[ChaosSilo] = field(default_factory=list)  # live (or not yet reaped)
    gone: list[ChaosSilo] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    start_failures: list[str] = field(default_factory=list)
    front_port: int = 0
    target: int = 0
    control: asyncio.Lock = field(default_factory=asyncio.Lock)
    _count: int = 0
    _session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.redis = RedisServer(self.directory / "redis")
        self.proxies = ProxyControl()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, silos: int) -> None:
        self.redis.start()
        await self.redis_always_fsync()
        await self.proxies.start()
        self.front_port = await self.proxies.add("front", [])
        self.target = silos
        for _ in range(silos):
            await self.add_silo()

    async def close(self) -> None:
        for silo in self.silos:
            silo.process.signal(signal.SIGCONT)
            with contextlib.suppress(Exception):
                await silo.process.kill()
        await self.proxies.close()
        if self._session is not None:
            await self._session.close()
        self.redis.stop()

    @property
    def front_url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        return self._session

    async def redis_client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.redis.url, socket_timeout=5.0)

    async def redis_always_fsync(self) -> None:
        # Every write is fsynced before Redis answers, so a SIGKILL of Redis loses nothing
        # that a silo was told is durable (with ``everysec`` it could lose a second).
        client = await self.redis_client()
        try:
            await client.config_set("appendfsync", "always")
        finally:
            await client.aclose()

    # -- silos -------------------------------------------------------------------------------

    async def add_silo(self) -> ChaosSilo:
        """Start one more silo behind fresh proxies; it joins the front door once ready."""
        index = self._count
        self._count += 1
        port = free_port_pair()
        await self.proxies.add(f"silo{index}", [(SILO_HOST, port)], port=port)
        redis_port = await self.proxies.add(f"redis{index}", [("127.0.0.1", self.redis.port)])
        env = {
            "BAYOU_HOST": SILO_HOST,
            "BAYOU_ADVERTISE_HOST": "127.0.0.1",
            "BAYOU_SILO_NAME": f"silo{index}",
            LOG_LEVEL_ENV: "INFO",  # a failure is diagnosed from these logs
            "PYTHONFAULTHANDLER": "1",  # SIGABRT prints every thread's stack (a hung drain)
            WITNESS_ENV: self.redis.url,
            **self.env,
        }
        process = SiloProcess(
            self.directory / f"silo{index}.db",
            app=APP,
            port=port,
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            cluster=self.name,
            env=env,
        )
        silo = ChaosSilo(index, process)
        self.silos.append(silo)
        try:
            await process.start(timeout=45)
        except (RuntimeError, TimeoutError) as exc:
            self.start_failures.append(f"silo{index}: {str(exc)[:300]}")
            silo.doomed = "kill"
            process.signal(signal.SIGKILL)
            raise
        silo.started = time.monotonic()
        view = await self.view(silo)
        silo.silo_id = view["silo"] if view else ""
        await self.update_front()
        return silo

    async def update_front(self) -> None:
        ready = [s for s in self.silos if s.alive() and s.doomed is None]
        await self.proxies.set_targets("front", [("127.0.0.1", s.port) for s in ready])

    async def view(self, silo: ChaosSilo) -> dict[str, Any] | None:
        """``GET /v1/cluster`` of one silo, straight to it (never through a proxy)."""
        try:
            async with self.session.get(silo.direct + "/v1/cluster") as resp:
                if resp.status != 200:
                    return None
                body: dict[str, Any] = await resp.json()
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    def live(self) -> list[ChaosSilo]:
        """Silos that run and that no fault is taking away."""
        return [s for s in self.silos if s.alive() and s.doomed is None]

    async def reap(self, reason_of: dict[str, str] | None = None) -> list[Exit]:
        """Forget silos whose process ended; record how each ended."""
        ended = []
        for silo in list(self.silos):
            if silo.alive():
                continue
            assert silo.process.proc is not None
            code = silo.process.proc.returncode
            silo.exit_code, silo.exited = code, time.monotonic()
            expected = silo.hung is None and {
                "kill": code == -signal.SIGKILL,
                "term": code == 0,
            }.get(silo.doomed or "", code == 3)
            fenced = re.search(r"fenced writes rejected: (\d+)", silo.process.log())
            if fenced:
                silo.fenced_writes = max(silo.fenced_writes, int(fenced[1]))
            reason = silo.hung or silo.doomed or ("declared dead" if code == 3 else "crashed")
            exit_ = Exit(
                silo.name, silo.silo_id, code, silo.exited, expected, reason, silo.hung is not None
            )
            self.exits.append(exit_)
            ended.append(exit_)
            self.silos.remove(silo)
            self.gone.append(silo)
            with contextlib.suppress(RuntimeError):
                await self.proxies.remove(silo.name)
                await self.proxies.remove(f"redis{silo.index}")
        if ended:
            await self.update_front()
        return ended

    async def fill(self, attempts: int = 5) -> None:
        """Start silos until ``target`` run (a supervisor restarting what exited); a silo
        that fails to start is retried a few times, then left to the next call."""
        failures = 0
        while len(self.live()) < self.target and failures < attempts:
            try:
                await self.add_silo()
            except (RuntimeError, TimeoutError):
                failures += 1
                await asyncio.sleep(1.0)
                await self.reap()

    async def settled(self, timeout: float = 60.0) -> bool:
        """Until every live silo routes by one ring of exactly the live silos."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = self.live()
            views = [await self.view(s) for s in live]
            if live and all(views):
                ids = {s.silo_id for s in live}
                rings = {v["ring_version"] for v in views if v}
                actives = [
                    {m["id"] for m in v["members"] if m["status"] == "active"} for v in views if v
                ]
                if len(rings) == 1 and all(a == ids for a in actives):
                    return True
            await asyncio.sleep(0.2)
        return False

    async def poll_stats(self) -> dict[str, dict[str, Any]]:
        """Each live silo's view; remembers each silo's fenced-write count."""
        views = {}
        for silo in list(self.silos):
            if not silo.alive() or silo.frozen:
                continue
            view = await self.view(silo)
            if view:
                silo.fenced_writes = max(silo.fenced_writes, int(view["stats"]["fenced_writes"]))
                views[silo.silo_id] = view
        return views

    def fenced_writes(self) -> int:
        return sum(s.fenced_writes for s in self.silos + self.gone)
