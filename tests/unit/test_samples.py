"""The samples behave as their READMEs say, on an in-process silo."""

from __future__ import annotations

import asyncio

import pytest

from bayou import ActorError, App, SiloSettings
from bayou.storage import MemoryStorage
from bayou.testing import local_silo
from samples.app import app as samples_app


async def test_counter() -> None:
    async with local_silo(samples_app) as silo:
        assert await silo.call("counter", "a", "add", {"n": 5}) == 5
        assert await silo.call("counter", "a", "add", {"n": -2}) == 3
        assert await silo.call("counter", "a", "get", {}) == 3
        assert await silo.call("counter", "b", "get", {}) == 0


async def test_loyalty() -> None:
    storage = MemoryStorage()
    async with local_silo(samples_app, storage=storage, stop=False) as silo:
        assert await silo.call("loyalty", "bob", "add", {"n": 990}) == "member"
        await silo.tell("loyalty", "bob", "visit", {"store": "north"})
        for _ in range(100):
            summary = await silo.call("loyalty", "bob", "summary", {})
            if summary["visits"] == 1:
                break
            await asyncio.sleep(0.01)
        assert summary["points"] == 995 and summary["last_visit"].startswith("north@")
        assert await silo.call("loyalty", "bob", "add", {"n": 5}) == "gold"
        with pytest.raises(ActorError, match="cannot redeem 5000"):
            await silo.call("loyalty", "bob", "redeem", {"n": 5000})
        assert await silo.call("loyalty", "bob", "points", {}) == 1000
    # After a crash, the replayed visit carries the same recorded timestamp.
    async with local_silo(samples_app, storage=storage) as silo:
        assert await silo.call("loyalty", "bob", "summary", {}) == summary | {"points": 1000}


async def test_chat_history_grows_and_replay_stays_bounded() -> None:
    storage = MemoryStorage()
    app = App(list(c.cls for c in samples_app.actors.values()), SiloSettings(snapshot_every=50))
    async with local_silo(app, storage=storage, stop=False) as silo:
        for i in range(1, 321):
            assert await silo.call("chat", "room", "post", {"author": "a", "text": f"m{i}"}) == i
    async with local_silo(app, storage=storage) as silo:
        page = await silo.call("chat", "room", "history", {"last": 3})
        assert [m["text"] for m in page] == ["m318", "m319", "m320"]
        assert await silo.call("chat", "room", "count", {}) == 320
        # 320 records, a snapshot every 50: only the 20 after the last one are read back.
        assert silo.catalog.activations()[0].replayed == 320 % 50
