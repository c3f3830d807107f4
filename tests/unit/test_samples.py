"""The samples behave as their READMEs say, on an in-process silo."""

from __future__ import annotations

import asyncio
import time

import pytest

from bayou import ActorError, App, InvalidArguments, SiloSettings
from bayou.storage import MemoryStorage
from bayou.testing import FakeClock, local_silo
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


async def test_loyalty_points_expire_on_a_monthly_reminder() -> None:
    from samples.loyalty import MONTH

    clock = FakeClock()
    # Coarse periods: a month of fake time passes in a few hundred wake-ups.
    hours = SiloSettings(lease=7200, heartbeat_interval=3600, reminder_interval=600,
                         idle_timeout=86400, snapshot_interval=86400)  # fmt: skip
    async with local_silo(samples_app.with_settings(hours), clock=clock) as silo:
        await silo.call("loyalty", "ann", "add", {"n": 300})
        await clock.advance(MONTH - 3600)
        assert await silo.call("loyalty", "ann", "points", {}) == 300
        await clock.advance(7200)  # the reminder reactivates the (passivated) account
        summary = await silo.call("loyalty", "ann", "summary", {})
        assert (summary["points"], summary["expired"]) == (0, 300)
        await silo.call("loyalty", "ann", "add", {"n": 5})
        await clock.advance(MONTH)
        assert (await silo.call("loyalty", "ann", "summary", {}))["expired"] == 305


async def test_chat_actor_stays_fast_at_ten_thousand_messages() -> None:
    storage = MemoryStorage()
    async with local_silo(samples_app, storage=storage, stop=False) as silo:
        for batch in range(100):
            lines = [{"author": "a", "text": f"m{batch * 100 + i + 1}"} for i in range(100)]
            await silo.call("chat-actor", "big", "import_lines", {"lines": lines})
        for i in range(10_001, 10_051):  # and posts one by one on top of a long history
            await silo.call("chat-actor", "big", "post", {"author": "b", "text": f"m{i}"})
    async with local_silo(samples_app, storage=storage) as silo:
        started = time.perf_counter()
        assert await silo.call("chat-actor", "big", "count", {}) == 10_050
        reactivated = time.perf_counter() - started
        page = await silo.call("chat-actor", "big", "history", {"last": 2})
        assert [line["text"] for line in page] == ["m10049", "m10050"]
        # Bounded recovery: one snapshot and at most snapshot_every - 1 records replayed.
        assert silo.catalog.activations()[0].replayed < samples_app.settings.snapshot_every
        print(f"\nreactivated a 10,050-message conversation in {reactivated * 1000:.1f} ms")


async def test_chat_actor_refuses_an_import_over_its_batch_limit() -> None:
    """The limit is declared with ``Annotated[list[Line], Field(max_length=1000)]``: its
    constraint must reach validation (it was once dropped with the Annotated metadata)."""
    async with local_silo(samples_app) as silo:
        lines = [{"author": "a", "text": "t"}] * 1001
        with pytest.raises(InvalidArguments) as caught:
            await silo.call("chat-actor", "big", "import_lines", {"lines": lines})
        assert caught.value.detail[0]["field"] == "lines"
        assert await silo.call("chat-actor", "big", "count", {}) == 0


async def test_approval_workflow() -> None:
    async with local_silo(samples_app) as silo:
        await silo.tell("approval", "q3", "submit", {"document": "budget"}, message_id="run-1")
        waiting = await silo.get_event("approval", "q3", "status", 2)
        assert waiting["value"] == {"document": "budget", "stage": "waiting"}
        await silo.send_to_topic("approval", "q3", "decision", {"approve": True, "by": "kim"})
        result = await silo.call(
            "approval", "q3", "submit", {"document": "budget"}, idempotency_key="run-1", timeout=5
        )
        assert result == "approved"
        assert (await silo.call("approval", "q3", "ledger", {}))["approved"] == ["budget"]
        log = await silo.read_stream("approval", "q3", "log", after=-1)
        assert [line for _, line in log["items"]] == [
            "budget: submitted for approval",
            "budget: approved by kim",
        ]
        assert log["closed"] is True


async def test_batch_continues_as_new_with_lineage() -> None:
    async with local_silo(samples_app) as silo:
        await silo.tell(
            "batch", "job", "run", {"start": 0, "end": 250, "chunk": 100}, message_id="j"
        )
        for _ in range(300):
            runs = await silo.workflow_runs("batch", "job")
            if runs and runs[-1]["status"] == "completed":
                break
            await asyncio.sleep(0.01)
        assert [(r["run"], r["status"], r.get("continued_from")) for r in runs] == [
            ("j", "continued", None),
            ("j~1", "continued", "j"),
            ("j~2", "completed", "j~1"),
        ]
        totals = await silo.call("batch", "job", "totals", {})
        assert totals["processed"] == 250
        assert totals["checksum"] == sum(i * i % 9973 for i in range(250))
