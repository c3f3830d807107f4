"""The workload actors of the chaos suite, each turn watched by an independent witness.

The witness is not the runtime's fencing: every exclusive turn (outside replay) takes a
lock of its own in Redis, ``SET NX`` with a token naming its activation, and gives it back
at the end. Finding the lock held by *another* activation means two activations of one
actor are running turns at once: the turn records the conflict (``CONFLICTS``, a Redis
list the checker reads) and fails as retryable, so the workload is not disturbed and the
count is exact. The lock's TTL is shorter than the membership lease, so a silo killed in
the middle of a turn does not leave it behind for the actor's next owner. While the
witness's own Redis is down (a fault), turns run unwatched.

The witness talks to Redis directly (``CHAOS_WITNESS_REDIS``), never through the proxies
the faults break: a silo cut off from the cluster still reaches it, so if it went on running
turns while another silo took its actors over, the witness would see both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from types import FrameType
from typing import TypeVar

import redis.asyncio as redis
from pydantic import BaseModel, Field
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from bayou import Actor, ActorBase, App, SiloSettings, Unavailable, actor, query, workflow
from bayou.runtime.logs import awaiting

WITNESS_ENV = "CHAOS_WITNESS_REDIS"
# The harness (tests/cluster/harness.py) pins BAYOU_LOG_LEVEL to WARNING; a chaos silo logs
# at this level instead, set when the silo imports this app.
LOG_LEVEL_ENV = "CHAOS_LOG_LEVEL"
if LOG_LEVEL_ENV in os.environ:
    logging.getLogger().setLevel(os.environ[LOG_LEVEL_ENV])
# A silo the harness finds hung gets this signal, then SIGABRT a second later: a stuck
# event loop idles in C, so the threads' stacks (faulthandler's, on SIGABRT) show nothing
# of what it waits for, and its asyncio tasks' stacks do.
TASKS_SIGNAL = signal.SIGUSR1


def _dump_tasks(signum: int, frame: FrameType | None) -> None:
    """Every asyncio task of the running loop, with its stack, to stderr (the silo's log)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    tasks = asyncio.all_tasks(loop)
    print(f"--- {len(tasks)} asyncio tasks (signal {signum}) ---", file=sys.stderr)
    for task in tasks:
        print(awaiting(task), file=sys.stderr)
    print("--- end of asyncio tasks ---", file=sys.stderr, flush=True)


if WITNESS_ENV in os.environ:  # in a chaos silo only, not in the harness importing this
    signal.signal(TASKS_SIGNAL, _dump_tasks)

LOCK_TTL_MS = 1500
CONFLICTS = "chaos:witness:conflicts"  # list of JSON objects, one per conflict seen
TURNS = "chaos:witness:turns"  # how many turns the witness watched (proof it ran)
STALE_OWN = "chaos:witness:stale-own"  # own lock found left over from a failed release

S = TypeVar("S", bound=BaseModel)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_client: redis.Redis | None = None


def witness_redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            os.environ[WITNESS_ENV],
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_timeout=True,
        )
    return _client


def lock_key(actor_type: str, key: str) -> str:
    return f"chaos:lock:{actor_type}:{key}"


class Witnessed(Actor[S]):
    """Base of the workload actors: an activation token and the witnessed turn."""

    token: str = ""

    async def on_activate(self) -> None:
        self.token = f"{os.getpid()}:{uuid.uuid4().hex[:12]}"

    @contextlib.asynccontextmanager
    async def witnessed(self) -> AsyncIterator[None]:
        """Hold the witness lock for the body of a turn (not while replaying)."""
        if self.ctx.replaying:
            yield
            return
        client = witness_redis()
        lock = lock_key(self.ctx.actor_type, self.key)
        mine = self.token.encode()
        conflict = None
        try:
            if not await client.set(lock, self.token, nx=True, px=LOCK_TTL_MS):
                holder = await client.get(lock)
                if holder == mine:
                    # Our own earlier turn could not release it (Redis was away): turns of one
                    # activation never overlap, so this is not a second activation.
                    await client.set(lock, self.token, px=LOCK_TTL_MS)
                    await client.incr(STALE_OWN)
                elif not await client.set(lock, self.token, nx=True, px=LOCK_TTL_MS):
                    conflict = {
                        "type": self.ctx.actor_type,
                        "key": self.key,
                        "holder": holder.decode() if isinstance(holder, bytes) else holder,
                        "taker": self.token,
                        "at": time.time(),
                    }
                    await client.rpush(CONFLICTS, json.dumps(conflict))
            await client.incr(TURNS)
        except RedisError:
            # The witness's Redis is away (the faults restart it): the turn runs unwatched.
            # Failing it instead would be a retryable error in the middle of the workload,
            # and how the runtime retries those is checked on its own, in
            # tests/unit/test_retryable_turns.py; while Redis is away nothing commits anyway.
            yield
            return
        if conflict is not None:
            # Retryable: nothing is recorded and the caller tries again; the count is exact.
            raise Unavailable(f"witness: {self.key} is held by activation {conflict['holder']}")
        try:
            yield
        finally:
            with contextlib.suppress(RedisError):  # the lock's TTL ends it anyway
                await client.eval(_RELEASE, 1, lock, self.token)


# -- counters -----------------------------------------------------------------------------------


class Count(BaseModel):
    value: int = 0


@actor("chaos-counter")
class ChaosCounter(Witnessed[Count]):
    """Adds: each acknowledged ``add`` must be reflected exactly once."""

    async def add(self, n: int) -> int:
        async with self.witnessed():
            self.state.value += n
            return self.state.value

    async def add_slowly(self, n: int, seconds: float = Field(le=1.0)) -> int:
        """``add`` holding its turn and the witness lock a while (tests/chaos/test_zombies)."""
        async with self.witnessed():
            await asyncio.sleep(seconds)
            self.state.value += n
            return self.state.value

    async def add_later(self, n: int, seconds: float = Field(le=1.0)) -> int:
        """``add`` after waiting a while, as a handler awaiting a dependency would."""
        await asyncio.sleep(seconds)
        async with self.witnessed():
            self.state.value += n
            return self.state.value

    @query
    async def get(self) -> int:
        return self.state.value


# -- per-key sequences (the linearizability check) ---------------------------------------------


class Sequence(BaseModel):
    items: list[str] = []


@actor("chaos-list")
class ChaosList(Witnessed[Sequence]):
    """Appends unique values; ``append`` answers the value's 1-based position."""

    async def append(self, value: str) -> int:
        async with self.witnessed():
            self.state.items.append(value)
            return len(self.state.items)

    @query
    async def read(self) -> list[str]:
        return self.state.items


# -- tells ----------------------------------------------------------------------------------------


class Received(BaseModel):
    tags: list[str] = []
    at: list[float] = []  # wall-clock time each tag was applied, for the latency figures


@actor("chaos-sink")
class ChaosSink(Witnessed[Received]):
    """Receives tells (from clients, and from ``chaos-source``); records each it applies."""

    async def take(self, tag: str) -> None:
        async with self.witnessed():
            self.state.tags.append(tag)
            self.state.at.append(self.ctx.now().timestamp())

    @query
    async def read(self) -> Received:
        return self.state


class Relayed(BaseModel):
    sent: int = 0


@actor("chaos-source")
class ChaosSource(Witnessed[Relayed]):
    """Tells a sink from its handler: the tell leaves exactly once, when the turn commits."""

    async def relay(self, tag: str, sink: str) -> int:
        async with self.witnessed():
            self.ref(ChaosSink, sink).tell.take(tag=tag)
            self.state.sent += 1
            return self.state.sent


# -- reminders ------------------------------------------------------------------------------------


class Rings(BaseModel):
    rings: list[str] = []
    at: list[float] = []


@actor("chaos-alarm")
class ChaosAlarm(Witnessed[Rings]):
    """Arms one-shot reminders; each must ring exactly once."""

    async def arm(self, name: str, due_in: float) -> None:
        async with self.witnessed():
            self.ctx.set_reminder(name, "ring", due_in=due_in, args={"name": name})

    async def ring(self, name: str) -> None:
        async with self.witnessed():
            self.state.rings.append(name)
            self.state.at.append(self.ctx.now().timestamp())

    @query
    async def rings(self) -> Rings:
        return self.state


# -- workflows ------------------------------------------------------------------------------------


class Finished(BaseModel):
    runs: list[str] = []


@actor("chaos-flow")
class ChaosFlow(Witnessed[Finished]):
    """A workflow of a few recorded steps and a durable sleep; its last act records the run,
    which must happen exactly once per run."""

    @workflow
    async def flow(self, run_id: str, steps: int) -> str:
        total = 0
        for i in range(steps):
            total += await self.ctx.run(f"step-{i}", lambda i=i: i + 1)  # type: ignore[misc]
        await self.ctx.sleep(0.3)
        await self.ref(ChaosFlow, self.key).finish(run_id=run_id)
        return f"{run_id}:{total}"

    async def finish(self, run_id: str) -> int:
        async with self.witnessed():
            self.state.runs.append(run_id)
            return len(self.state.runs)

    @query
    async def finished(self) -> list[str]:
        return self.state.runs


ACTORS: list[type[ActorBase]] = [
    ChaosCounter,
    ChaosList,
    ChaosSink,
    ChaosSource,
    ChaosAlarm,
    ChaosFlow,
]

app = App(
    ACTORS,
    SiloSettings(
        snapshot_every=25,  # snapshots and trimming happen often, under the faults
        idle_timeout=20,  # and so do passivation and reactivation from storage
        call_timeout=10,
        workflow_history=5000,  # the checker reads every run's outcome back
    ),
)
