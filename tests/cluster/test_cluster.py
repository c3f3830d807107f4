"""The cluster's promise, on real silo processes and a real redis-server: nothing about an
actor's behaviour changes when silos join, leave, crash or are frozen.

Every load here is checked three ways: each counter equals exactly the adds acknowledged
for it (nothing lost, nothing doubled), every add that was sent was acknowledged after
retries, and the witness actor's own Redis lock saw no two activations running at once.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bayou import BayouError, Client
from tests.cluster.cluster import Cluster, Load, witness_violations
from tests.redis_server import RedisServer

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster(
    tmp_path: Path, redis_server: RedisServer, cluster_name: str
) -> AsyncIterator[Cluster]:
    nodes = Cluster(tmp_path, redis_server, cluster_name)
    try:
        yield nodes
    finally:
        await nodes.close()


async def test_spread_and_routing(cluster: Cluster) -> None:
    await cluster.start(3)
    keys = [f"k{i}" for i in range(1000)]
    async with Client(cluster.urls[0]) as client:
        await asyncio.gather(*(client.ref("counter", key).add(n=1) for key in keys))
        await asyncio.gather(*(client.ref("counter", key).add(n=1) for key in keys))
    views = await cluster.views()
    per_silo = [v["stats"]["activations"] for v in views]
    assert sum(per_silo) == 1000
    for count in per_silo:
        assert abs(count - 1000 / 3) <= 0.3 * 1000 / 3, per_silo
    # The smart client sent (almost) every call straight to the owner.
    forwards = sum(v["stats"]["received"] for v in views)
    assert forwards <= 0.01 * 2000, forwards
    # Any silo answers for any actor, forwarding to the owner: the same result everywhere.
    for silo in cluster.silos:
        async with Client(silo.url, routing=False) as plain:
            values = await asyncio.gather(*(plain.ref("counter", k).get() for k in keys[:50]))
            assert values == [2] * 50
    after = await cluster.views()
    assert sum(v["stats"]["received"] for v in after) >= 2 * 50  # non-owners did forward


async def test_sigkill_one_of_three_under_load(cluster: Cluster) -> None:
    await cluster.start(3)
    load = Load(cluster.urls)
    load.start()
    await load.wait_acked(300)
    victim = cluster.silos[1]
    before = await cluster.view(cluster.silos[0])
    victim_id = next(m["id"] for m in before["members"] if m["address"].endswith(f":{victim.port}"))
    orphans = [k for k in load.keys if cluster.owner_of(before, "witness", k) == victim_id]
    assert orphans, "the victim owned none of the load's actors; the test would prove nothing"
    killed_at = time.monotonic()
    await victim.kill()
    cluster.retire(victim)
    # Failure detection: a survivor declares the victim dead.
    detected = None
    while detected is None:
        view = await cluster.view()
        statuses = {m["id"]: m["status"] for m in view["members"]}
        if statuses.get(victim_id) == "dead":
            detected = time.monotonic() - killed_at
        elif time.monotonic() - killed_at > 15:
            raise AssertionError(f"victim not declared dead after 15 s: {statuses}")
        else:
            await asyncio.sleep(0.05)
    # Recovery: every actor the victim owned answers again.
    async with Client(cluster.urls, timeout=2.0, max_attempts=2) as client:
        pending = set(orphans)
        while pending:
            results = await asyncio.gather(
                *(client.ref("witness", k).get() for k in pending), return_exceptions=True
            )
            pending = {k for k, r in zip(pending, results, strict=True) if isinstance(r, Exception)}
            assert time.monotonic() - killed_at < 10, f"{len(pending)} actors still silent"
    recovered = time.monotonic() - killed_at
    await load.wait_acked(load.total_acked + 200)
    await load.finish()
    await load.check(cluster.urls[0])
    assert await witness_violations(cluster.redis.url) == 0
    print(
        f"\nfailure detected in {detected:.2f}s; all {len(orphans)} actors answered after "
        f"{recovered:.2f}s; failures seen by clients: {dict(load.failures)}"
    )
    assert detected < 5


async def test_sigterm_one_of_three_under_load(cluster: Cluster) -> None:
    await cluster.start(3)
    load = Load(cluster.urls)
    load.start()
    await load.wait_acked(300)
    leaving = cluster.silos[2]
    started = time.monotonic()
    code = await leaving.terminate()
    drained = time.monotonic() - started
    cluster.retire(leaving)
    assert code == 0, leaving.log()
    await cluster.wait_settled(2)
    await load.wait_acked(load.total_acked + 300)
    await load.finish()
    await load.check(cluster.urls[0])
    assert await witness_violations(cluster.redis.url) == 0
    views = await cluster.views()
    assert sum(v["stats"]["fenced_writes"] for v in views) == 0
    print(f"\ngraceful drain took {drained:.2f}s; client-visible retries: {dict(load.failures)}")


async def test_scale_up_from_two_to_four_under_load(cluster: Cluster) -> None:
    await cluster.start(2)
    first = (await cluster.view())["owners"]
    first_members = [m["id"] for m in (await cluster.view())["members"]]
    load = Load(cluster.urls)
    load.start()
    await load.wait_acked(200)
    await cluster.add_silo()
    await cluster.add_silo()
    load.urls = cluster.urls
    views = await cluster.wait_settled(4)
    final = views[0]
    members = [m["id"] for m in final["members"]]
    moved = sum(first_members[a] != members[b] for a, b in zip(first, final["owners"], strict=True))
    fraction = moved / final["partitions"]
    await load.wait_acked(load.total_acked + 300)
    await load.finish()
    await load.check(cluster.urls[0])
    assert await witness_violations(cluster.redis.url) == 0
    counts = Tally(final["owners"])
    print(f"\nscale-up 2->4 moved {fraction:.1%} of partitions; per silo {sorted(counts.values())}")
    assert abs(fraction - 0.5) <= 0.05
    assert len(counts) == 4


async def test_a_frozen_silo_is_fenced_and_stops_serving(cluster: Cluster) -> None:
    await cluster.start(3)
    load = Load(cluster.urls)
    load.start()
    await load.wait_acked(300)
    frozen = cluster.silos[0]
    # A turn in flight when the silo freezes: it will try to commit after waking, by which
    # time another silo owns its partition.
    view = await cluster.view(frozen)
    frozen_id = view["silo"]
    key = next(
        k for k in (f"p{i}" for i in range(1000)) if cluster.owner_of(view, "probe", k) == frozen_id
    )
    async with Client(frozen.url, routing=False, timeout=30, max_attempts=1) as direct:
        in_flight = asyncio.ensure_future(direct.ref("probe", key).sleep(seconds=1.0))
        await asyncio.sleep(0.3)
        frozen.signal(signal.SIGSTOP)
        try:
            cluster.retire(frozen)
            await cluster.wait_settled(2, timeout=20)  # declared dead, partitions taken over
            await load.wait_acked(load.total_acked + 200)
            # The new owner serves the probe actor meanwhile (its own turn commits).
            async with Client(cluster.urls) as client:
                assert await client.ref("probe", key).sleep(seconds=0.01) == 0.01
        finally:
            frozen.signal(signal.SIGCONT)
        with pytest.raises(BayouError):  # the zombie's turn is not acknowledged
            await in_flight
    # On waking, the silo finds its lease gone: it stops serving instead of writing on.
    code = await frozen.wait_exit(timeout=15)
    log = frozen.log()
    assert code == 3, log
    assert "declared dead by the cluster" in log
    fenced = re.search(r"fenced writes rejected: (\d+)", log)
    assert fenced is not None, log
    print(f"\nfrozen silo stopped serving on waking; fenced writes rejected: {fenced[1]}")
    assert int(fenced[1]) >= 1
    await load.finish()
    await load.check(cluster.urls[0])
    assert await witness_violations(cluster.redis.url) == 0


async def test_redis_restart_under_load(tmp_path: Path, cluster_name: str) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    cluster = Cluster(tmp_path, redis, cluster_name)
    try:
        await cluster.start(2)
        load = Load(cluster.urls)
        load.start()
        await load.wait_acked(200)
        redis.restart()
        await load.wait_acked(load.total_acked + 300, timeout=30)
        await load.finish()
        await load.check(cluster.urls[0])
        assert all(silo.proc is not None and silo.proc.poll() is None for silo in cluster.silos)
        assert await witness_violations(redis.url) == 0
    finally:
        await cluster.close()
        redis.stop()


async def test_bayou_status_prints_the_members(cluster: Cluster) -> None:
    await cluster.start(2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bayou", "status",
        "--redis", cluster.redis.url, "--cluster", cluster.name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    lines = [line.split() for line in text.splitlines()[2:]]
    assert [row[2] for row in lines] == ["active", "active"]
    assert sum(int(row[4]) for row in lines) == 1024


async def test_call_chains_cross_silos_deadlocks_fail_fast_reentrancy_lets_them_in(
    cluster: Cluster,
) -> None:
    await cluster.start(2)
    view = await cluster.view()
    ids = [m["id"] for m in view["members"]]
    # Keys whose actors live on different silos, so every hop of a cycle crosses the link.
    home = {ids[0]: [], ids[1]: []}  # type: dict[str, list[str]]
    for i in range(200):
        home[cluster.owner_of(view, "ring-node", f"n{i}")].append(f"n{i}")
    first, second = home[ids[0]][0], home[ids[1]][0]
    url = f"{cluster.urls[0]}/v1/actors/ring-node/{first}/relay"
    for _attempt in range(2):  # the first activates both actors; the second is timed
        started = time.monotonic()
        async with cluster.session.post(url, json={"path": [second, first]}) as resp:
            body = await resp.json()
            elapsed = time.monotonic() - started
            assert resp.status == 409, body
    assert body["error"]["type"] == "DeadlockError"
    assert body["error"]["detail"]["cycle"] == [
        f"ring-node/{first}",
        f"ring-node/{second}",
        f"ring-node/{first}",
    ]
    assert elapsed < 0.1, elapsed
    # The same cycle into a call-chain-reentrant actor is let in, across silos.
    a = next(f"a{i}" for i in range(200) if cluster.owner_of(view, "chain-a", f"a{i}") == ids[0])
    b = next(f"b{i}" for i in range(200) if cluster.owner_of(view, "bouncer", f"b{i}") == ids[1])
    async with Client(cluster.urls[1]) as client:
        assert await client.call("chain-a", a, "start", {"via": b}) == ["bounced", "start", "end"]
        assert await client.call("chain-a", a, "read", {}) == ["bounced", "start", "end"]
