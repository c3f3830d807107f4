"""A hand-off (a drain, a scale-down) does not wait long for tells it cannot deliver yet:
their records stay in the journal and the actor's next activation sends them again, which
the receiver deduplicates. Found by the chaos suite: a silo handing its partitions off
held each batch of them ten seconds on a source actor whose tell went to a sink in a
partition the same silo was still to hand off (the sink's new owner waits for that
release, which waited for the source): a SIGTERM drained in 13 s instead of 2, and its
partitions answered nothing meanwhile."""

from __future__ import annotations

import asyncio

from bayou import App
from bayou.testing import local_silo
from tests.unit.relay_actors import RelaySink, RelaySource, TellsRefused

APP = App([RelaySink, RelaySource])


async def test_a_drain_leaves_undelivered_tells_to_the_journal_without_waiting_long() -> None:
    storage = TellsRefused()
    loop = asyncio.get_running_loop()
    async with local_silo(APP, storage=storage) as silo:
        storage.refusing = True
        await silo.call("relay-source", "s", "relay", {"tag": "t1", "sink": "k"})
        await asyncio.sleep(0.2)  # the outbox is trying, and failing
        stopping = loop.time()
    assert loop.time() - stopping < 3.0  # the drain (leaving the context) was quick
    storage.refusing = False
    async with local_silo(APP, storage=storage) as silo:
        assert await silo.call("relay-source", "s", "sent", {}) == ["t1"]  # replayed
        tags: list[str] = []
        for _ in range(50):  # its tell leaves again from the journal
            tags = await silo.call("relay-sink", "k", "read", {})
            if tags:
                break
            await asyncio.sleep(0.05)
        assert tags == ["t1"]
