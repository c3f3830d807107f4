"""The fault scheduler: every few seconds one fault, chosen by a seeded random generator.

Kinds (``KINDS``): SIGKILL a silo and start a new one; SIGTERM a silo (it drains) and start a
new one; SIGSTOP a silo past its lease, then SIGCONT; restart Redis (SIGKILL or SIGTERM, down
for a while; AOF with ``appendfsync always``); cut a silo off from the other silos, the
clients and Redis for a while (black hole or reset); scale to between 1 and 5 silos.

Kinds come in rounds: each round is a seeded shuffle of every kind, so even a short run
injects each one. Everything random (victims, durations, modes, pauses) comes from the same
generator, so a seed replays the same *schedule*; what the cluster does in between is
timing and may differ.

A silo that exits on its own (code 3, declared dead after a freeze, a cut or a long Redis
outage) is restarted by the supervisor loop, as Kubernetes would restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from bayou import SiloSettings
from tests.chaos.actors import TASKS_SIGNAL
from tests.chaos.cluster import ChaosCluster, ChaosSilo

KINDS = ("kill", "term", "freeze", "redis", "isolate", "scale")
MIN_SILOS, MAX_SILOS = 1, 5
LEASE = SiloSettings().lease  # the silos run the default; a freeze must outlast it


@dataclass
class Fault:
    """One injected fault, with what was measured about it (times in seconds)."""

    kind: str
    start: float
    end: float = 0.0  # when the injection was over (the silo thawed, Redis back, ...)
    victim: str = ""
    victim_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    detected: float | None = None  # seconds from start until the cluster declared it dead
    recovered: float | None = None  # seconds from start until every canary answered again
    note: str = ""


async def abort(silo: ChaosSilo, why: str) -> None:
    """Abort a hung silo, its log ending with its asyncio tasks' stacks (``TASKS_SIGNAL``)
    and then every thread's (SIGABRT, faulthandler)."""
    silo.hung = why
    silo.process.signal(TASKS_SIGNAL)
    await asyncio.sleep(1.0)
    silo.process.signal(signal.SIGABRT)


class Nemesis:
    """Injects the faults, one at a time, holding the cluster's ``control`` lock meanwhile
    (so the supervisor does not restart what a fault is busy taking away)."""

    def __init__(self, cluster: ChaosCluster, seed: int, pause: tuple[float, float]) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.pause = pause
        self.faults: list[Fault] = []
        self._round: list[str] = []
        self._watchers: set[asyncio.Task[None]] = set()

    def next_kind(self) -> str:
        if not self._round:
            self._round = list(KINDS)
            self.rng.shuffle(self._round)
        return self._round.pop()

    async def run(self, until: float, rounds: int = 1) -> None:
        """Inject faults until ``until`` (monotonic) and at least ``rounds`` full rounds of
        every kind; the last fault is healed before this returns."""
        while time.monotonic() < until or len(self.faults) < rounds * len(KINDS):
            await asyncio.sleep(self.rng.uniform(*self.pause))
            kind = self.next_kind()
            async with self.cluster.control:
                await self.cluster.reap()
                await self.cluster.fill()
                fault = Fault(kind, time.monotonic())
                self.faults.append(fault)
                await getattr(self, f"_{kind}")(fault)
                fault.end = time.monotonic()

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart silos that exited on their own; keep ``target`` silos running; abort a
        silo still running long after the cluster declared it dead (it should exit, code 3,
        within a heartbeat or two), as a liveness probe would."""
        dead_since: dict[str, float] = {}
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            await self._abort_the_undead(dead_since)
            if self.cluster.control.locked():
                continue
            async with self.cluster.control:
                await self.cluster.reap()
                await self.cluster.fill()

    async def _abort_the_undead(self, dead_since: dict[str, float], grace: float = 20.0) -> None:
        healthy = [s for s in self.cluster.live() if not (s.frozen or s.isolated)]
        views = [v for v in await asyncio.gather(*map(self.cluster.view, healthy)) if v]
        if not views:
            return
        view = max(views, key=lambda v: int(v["ring_version"]))  # the freshest membership
        dead = {m["id"] for m in view["members"] if m["status"] == "dead"}
        now = time.monotonic()
        for silo in healthy:
            if silo.silo_id not in dead:
                dead_since.pop(silo.silo_id, None)
            elif now - dead_since.setdefault(silo.silo_id, now) > grace and not silo.hung:
                await abort(silo, f"still running {grace:.0f} s after it was declared dead")

    async def finish(self) -> None:
        for task in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- victims and detection ------------------------------------------------------------------

    def victim(self) -> ChaosSilo | None:
        live = self.cluster.live()
        return self.rng.choice(live) if live else None

    def watch_death(self, fault: Fault, silo: ChaosSilo, timeout: float = 15.0) -> None:
        """Measure, in the background, how long until another silo declares ``silo`` dead.
        Stops watching ``timeout`` seconds after the fault, or once a later fault takes the
        same silo away: a silo cut off for less than its lease is rightly never declared."""

        doomed = silo.doomed

        async def watch() -> None:
            deadline = fault.start + timeout
            while time.monotonic() < deadline and silo.doomed == doomed:
                for other in list(self.cluster.silos):
                    if other is silo or not other.alive() or other.frozen or other.isolated:
                        continue
                    view = await self.cluster.view(other)
                    statuses = {m["id"]: m["status"] for m in view["members"]} if view else {}
                    # Absent is not dead: a silo that just started may not list it yet.
                    if statuses.get(silo.silo_id) == "dead":
                        fault.detected = time.monotonic() - fault.start
                        return
                await asyncio.sleep(0.05)

        task = asyncio.ensure_future(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _mark(self, fault: Fault, silo: ChaosSilo) -> None:
        fault.victim, fault.victim_id = silo.name, silo.silo_id

    # -- the faults -------------------------------------------------------------------------------

    async def _kill(self, fault: Fault) -> None:
        silo = self.victim()
        if silo is None:
            fault.note = "no silo"
            return
        self._mark(fault, silo)
        silo.doomed = "kill"
        await self.cluster.update_front()
        silo.process.signal(signal.SIGKILL)
        self.watch_death(fault, silo)
        await silo.process.wait_exit()
        await self.cluster.reap()
        await self.cluster.fill()

    async def _term(self, fault: Fault) -> None:
        silo = self.victim()
        if silo is None:
            fault.note = "no silo"
            return
        self._mark(fault, silo)
        silo.doomed = "term"
        await self.cluster.update_front()
        silo.process.signal(signal.SIGTERM)
        drained = asyncio.ensure_future(silo.process.wait_exit(timeout=40))
        drained.add_done_callback(
            lambda _: fault.params.setdefault("drain_s", round(time.monotonic() - fault.start, 3))
        )
        # A rolling restart: the new silo starts while the old one drains.
        await self.cluster.fill()
        try:
            await drained
        except TimeoutError:
            fault.note = "drain did not finish in 40 s; aborted (stacks in its log)"
            await abort(silo, "SIGTERM drain did not finish in 40 s")
            await silo.process.wait_exit()
        await self.cluster.reap()

    async def _freeze(self, fault: Fault) -> None:
        silo = self.victim()
        if silo is None:
            fault.note = "no silo"
            return
        self._mark(fault, silo)
        seconds = LEASE + self.rng.uniform(0.5, 2.5)
        fault.params["seconds"] = round(seconds, 2)
        silo.frozen = True
        silo.process.signal(signal.SIGSTOP)
        self.watch_death(fault, silo)
        try:
            await asyncio.sleep(seconds)
        finally:
            silo.process.signal(signal.SIGCONT)
            silo.frozen = False
        # On waking it finds it was declared dead and exits (3); the supervisor restarts it.

    async def _redis(self, fault: Fault) -> None:
        redis = self.cluster.redis
        assert redis.proc is not None
        how = self.rng.choice(["kill", "term"])
        down = self.rng.uniform(0.3, 4.0)
        fault.params.update(signal=how, down_s=round(down, 2))
        if how == "kill":
            redis.proc.kill()
            redis.proc.wait()
        else:
            redis.stop()
        await asyncio.sleep(down)
        await asyncio.to_thread(redis.start)
        await self.cluster.redis_always_fsync()

    async def _isolate(self, fault: Fault) -> None:
        silo = self.victim()
        if silo is None:
            fault.note = "no silo"
            return
        self._mark(fault, silo)
        mode = self.rng.choice(["pause", "reset"])
        seconds = self.rng.uniform(1.5, 7.0)
        fault.params.update(mode=mode, seconds=round(seconds, 2))
        proxies = self.cluster.proxies
        silo.isolated = True
        await proxies.cut(f"redis{silo.index}", mode)
        await proxies.cut(silo.name, mode)
        fault.params["outbound_links"] = await proxies.isolate(silo.pid, mode)
        self.watch_death(fault, silo)
        try:
            await asyncio.sleep(seconds)
        finally:
            await proxies.unisolate(silo.pid)
            with contextlib.suppress(RuntimeError):
                await proxies.heal(silo.name)
                await proxies.heal(f"redis{silo.index}")
            silo.isolated = False

    async def _scale(self, fault: Fault) -> None:
        current = len(self.cluster.live())
        choices = [n for n in range(MIN_SILOS, MAX_SILOS + 1) if n != current]
        target = self.rng.choice(choices)
        fault.params.update(before=current, after=target)
        self.cluster.target = target
        if target > current:
            await self.cluster.fill()
            return
        leaving = self.rng.sample(self.cluster.live(), current - target)
        for silo in leaving:
            silo.doomed = "term"
        await self.cluster.update_front()
        for silo in leaving:
            silo.process.signal(signal.SIGTERM)
        fault.victim = ",".join(s.name for s in leaving)
        results = await asyncio.gather(
            *(s.process.wait_exit(timeout=40) for s in leaving), return_exceptions=True
        )
        for silo, result in zip(leaving, results, strict=True):
            if isinstance(result, BaseException):
                fault.note += f"{silo.name} did not drain in 40 s; aborted (stacks in its log). "
                await abort(silo, "SIGTERM drain did not finish in 40 s")
                await silo.process.wait_exit()
        await self.cluster.reap()
