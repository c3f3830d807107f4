"""Journaled tells that had not gone out when their silo crashed are sent by the next owner
without waiting for the sender to be called again, and an activation is not passivated
while its tells are still on their way.

Found by tests/cluster/test_workflow_crash.py: a batch workflow that continues as new
commits the message that starts its next run as a tell to itself. A SIGKILL between that
commit and the tell's delivery left the next run in the journal of an actor nothing would
ever activate again: the job hung with no error (about one run in ten on a busy machine).
"""

from __future__ import annotations

import asyncio

from bayou import App, SiloSettings
from bayou.runtime.silo import Silo
from bayou.testing import local_silo
from tests.unit.relay_actors import RelaySink, RelaySource, TellsRefused

APP = App([RelaySink, RelaySource], SiloSettings(idle_timeout=0.3))


async def _sink_tags(silo: Silo, expected: list[str], seconds: float = 3.0) -> list[str]:
    tags: list[str] = []
    for _ in range(int(seconds / 0.05)):
        tags = await silo.call("relay-sink", "k", "read", {})
        if tags == expected:
            break
        await asyncio.sleep(0.05)
    return tags


async def test_a_crash_before_delivery_leaves_the_tell_to_the_next_owner() -> None:
    storage = TellsRefused()
    async with local_silo(APP, storage=storage, stop=False) as silo:
        storage.refusing = True
        await silo.call("relay-source", "s", "relay", {"tag": "t1", "sink": "k"})
        await asyncio.sleep(0.1)  # the outbox is trying, and failing
        partition = silo.catalog.actor_key("relay-source", "s").partition
        assert await storage.outbox_actors([partition]) == [
            silo.catalog.actor_key("relay-source", "s")
        ]
    # The silo is gone without a snapshot; nobody calls the source again.
    storage.refusing = False
    async with local_silo(APP, storage=storage) as silo:
        assert await _sink_tags(silo, ["t1"]) == ["t1"]
        assert silo.catalog.peek("relay-source", "s") is not None  # woken to send it


async def test_no_passivation_while_tells_are_on_their_way() -> None:
    storage = TellsRefused()
    async with local_silo(APP, storage=storage) as silo:
        storage.refusing = True
        await silo.call("relay-source", "s", "relay", {"tag": "t1", "sink": "k"})
        source = silo.catalog.actor_key("relay-source", "s")
        await asyncio.sleep(1.0)  # three idle timeouts
        assert silo.catalog.peek("relay-source", "s") is not None
        storage.refusing = False
        assert await _sink_tags(silo, ["t1"]) == ["t1"]
        for _ in range(60):  # now idle with nothing left to send: passivated, snapshotted
            if silo.catalog.peek("relay-source", "s") is None:
                break
            await asyncio.sleep(0.05)
        assert silo.catalog.peek("relay-source", "s") is None
        assert await storage.outbox_actors([source.partition]) == []
