"""The harness finds tells that wait in the inbox of an actor no activation runs, without
activating anything itself (the final reads of a run activate every actor, which would
run such tells and hide the bug; tests/unit/test_inbox_wake.py has the bugs it stands for).

A tell is planted in storage the way a silo that crashed right after accepting it would
leave it, except that no silo will look for it: its partition was never this silo's to
inherit, so nothing wakes the actor until a message comes for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bayou import Client, codec
from bayou.storage.contract import ActorKey, Fence, InboxMessage
from bayou.storage.redis import RedisStorage
from bayou.wire import partition_of
from tests.chaos.cluster import ChaosCluster
from tests.chaos.run import stuck_inboxes

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ChaosCluster]:
    nodes = ChaosCluster(tmp_path)
    try:
        await nodes.start(1)
        assert await nodes.settled()
        yield nodes
    finally:
        await nodes.close()


@pytest.mark.timeout(60)
async def test_a_tell_nothing_runs_is_found_without_running_it(cluster: ChaosCluster) -> None:
    assert await stuck_inboxes(cluster.front_url, timeout=0.0) == {}
    actor = ActorKey("chaos-sink", "s0", partition_of("chaos-sink", "s0", 1024))
    storage = RedisStorage(cluster.redis.url, cluster.name)
    await storage.open()
    try:
        epoch = await storage.claim(actor.partition, "ghost-silo")
        assert epoch is not None
        data = codec.pack({"m": "take", "a": {"tag": "planted"}})
        fence = Fence(actor.partition, "ghost-silo", epoch)
        assert await storage.inbox_put(actor, fence, InboxMessage("planted", data))
    finally:
        await storage.close()
    assert await stuck_inboxes(cluster.front_url, timeout=1.5) == {"chaos-sink/s0": 1}
    # It was only waiting: the first message for the actor activates it, and it runs.
    async with Client(cluster.front_url, timeout=10) as client:
        for _ in range(50):  # the read (a query) may run before the tell's turn
            tags = (await client.call("chaos-sink", "s0", "read"))["tags"]
            if tags:
                break
            await asyncio.sleep(0.1)
    assert tags == ["planted"]
    assert await stuck_inboxes(cluster.front_url, timeout=0.0) == {}
