"""Two runtime bugs the chaos runs found, each reduced to a deterministic scenario.

1. A silo that wakes from a freeze longer than its lease keeps starting the turns that
   were queued in its mailboxes before it froze, while the actors' new owner runs theirs:
   two activations processing one actor's messages at once. Only a fenced write stops an
   activation's mailbox, and a turn that fails before writing (here, a handler raising a
   retryable error) never meets the fence, so every queued turn after it runs too. The
   witness sees each one.
2. A Redis outage longer than the lease kills every silo but one: the first silo to renew
   once Redis is back finds the others' leases expired (by the Redis clock, which kept
   running while nobody could renew) and declares them dead, and they exit (code 3).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bayou import BayouError, Client
from bayou.wire import partition_of
from tests.chaos.actors import CONFLICTS
from tests.chaos.cluster import ChaosCluster, ChaosSilo

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ChaosCluster]:
    nodes = ChaosCluster(tmp_path)
    try:
        yield nodes
    finally:
        await nodes.close()


async def owned_key(cluster: ChaosCluster, silo: ChaosSilo) -> str:
    view = await cluster.view(silo)
    assert view is not None
    members = [m["id"] for m in view["members"]]
    for i in range(10_000):
        key = f"z{i}"
        if members[view["owners"][partition_of("chaos-counter", key, 1024)]] == silo.silo_id:
            return key
    raise AssertionError("no key on that silo")


async def declared_dead(cluster: ChaosCluster, judge: ChaosSilo, victim: ChaosSilo) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        view = await cluster.view(judge)
        if view and {m["id"]: m["status"] for m in view["members"]}[victim.silo_id] == "dead":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{victim.silo_id} was not declared dead")


async def conflicts_taken_by(cluster: ChaosCluster, pid: int) -> list[dict[str, object]]:
    client = await cluster.redis_client()
    try:
        raw = await client.lrange(CONFLICTS, 0, -1)
    finally:
        await client.aclose()
    return [c for c in map(json.loads, raw) if str(c["taker"]).startswith(f"{pid}:")]


@pytest.mark.timeout(90)
async def test_a_thawed_silo_starts_no_queued_turn_after_its_lease_lapsed(
    cluster: ChaosCluster,
) -> None:
    await cluster.start(2)
    assert await cluster.settled()
    old, new = cluster.silos
    key = await owned_key(cluster, old)
    async with (
        Client(old.process.url, routing=False, timeout=30, max_attempts=1) as to_old,
        Client(new.process.url, routing=False, timeout=30, max_attempts=50) as to_new,
    ):
        # One turn waits on a "dependency", five more queue behind it.
        queued = [
            asyncio.ensure_future(
                to_old.call(
                    "chaos-counter",
                    key,
                    "add_later",
                    {"n": 1, "seconds": 0.5},
                    idempotency_key=f"queued-{i}",
                )
            )
            for i in range(6)
        ]
        await asyncio.sleep(0.2)
        old.process.signal(signal.SIGSTOP)
        old.frozen = True
        # Keep it from learning it was declared dead for a while after it wakes up.
        await cluster.proxies.cut(f"redis{old.index}", "pause")
        await declared_dead(cluster, new, old)

        async def keep_busy(until: float) -> None:  # the new owner holds the witness lock
            i = 0
            while time.monotonic() < until:
                i += 1
                await to_new.call(
                    "chaos-counter",
                    key,
                    "add_slowly",
                    {"n": 1, "seconds": 0.3},
                    idempotency_key=f"busy-{i}",
                )

        busy = asyncio.ensure_future(keep_busy(time.monotonic() + 4.0))
        await asyncio.sleep(1.0)
        old.process.signal(signal.SIGCONT)
        old.frozen = False
        await busy
        await cluster.proxies.heal(f"redis{old.index}")
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert all(isinstance(r, BayouError) for r in results), results
    # The turn that was waiting when the silo froze finishes its handler on waking (nothing
    # can stop a running coroutine); it is the only one that may meet the witness.
    assert len(await conflicts_taken_by(cluster, old.pid)) <= 1


async def outage(cluster: ChaosCluster, seconds: float) -> None:
    assert cluster.redis.proc is not None
    cluster.redis.proc.kill()
    cluster.redis.proc.wait()
    await asyncio.sleep(seconds)
    await asyncio.to_thread(cluster.redis.start)
    await cluster.redis_always_fsync()


async def test_a_redis_outage_shorter_than_the_lease_keeps_every_silo(
    cluster: ChaosCluster,
) -> None:
    await cluster.start(3)
    assert await cluster.settled()
    await outage(cluster, 1.0)
    await asyncio.sleep(4.0)
    assert [s.alive() for s in cluster.silos] == [True] * 3
    assert await cluster.settled(timeout=20)


@pytest.mark.timeout(90)
async def test_a_redis_outage_longer_than_the_lease_keeps_every_silo(
    cluster: ChaosCluster,
) -> None:
    await cluster.start(3)
    assert await cluster.settled()
    await outage(cluster, 4.5)
    await asyncio.sleep(6.0)  # every silo has renewed (or learnt it was declared dead)
    assert [s.alive() for s in cluster.silos] == [True] * 3
