"""Tells from actors, deadlock detection, events, streams and timers, on one silo."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from bayou import ActorError, App, BadRequest, DeadlockError, NotFound, SiloSettings, codec
from bayou.runtime.channels import _following
from bayou.runtime.effects import StreamAppend
from bayou.storage import ActorKey, MemoryStorage
from bayou.testing import FakeClock, local_silo
from tests.unit.pattern_actors import Hasher, Publisher, RingNode, Sink, Source

APP = App([Sink, Source, RingNode, Publisher], SiloSettings(snapshot_every=1000))


async def eventually(check, timeout: float = 2.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.005)


async def test_tells_from_a_handler_leave_after_commit_exactly_once() -> None:
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, stop=False) as silo:
        assert await silo.call("source", "a", "fan_out", {"count": 3}) == 3
        with pytest.raises(ActorError, match="changed my mind"):
            await silo.call("source", "a", "fan_out_then_fail", {})

        async def three() -> bool:
            return bool((await silo.call("sink", "s", "read", {}))["total"] == 3)

        assert await eventually(three)
    # After a crash the journal is replayed and its tells are sent again: the sink
    # recognises their ids and applies none of them twice.
    async with local_silo(APP, storage=storage) as silo:
        await silo.call("source", "a", "fan_out", {"count": 1})

        async def four() -> bool:
            return bool((await silo.call("sink", "s", "read", {}))["total"] == 4)

        assert await eventually(four)
        await asyncio.sleep(0.05)
        state = await silo.call("sink", "s", "read", {})
    assert state["total"] == 4
    assert state["seen"] == ["a-0-0", "a-0-1", "a-0-2", "a-3-0"]  # in order, no "never"


async def test_call_cycles_fail_at_once_naming_the_cycle() -> None:
    async with local_silo(APP) as silo:
        assert await silo.call("ring-node", "a", "relay", {"path": ["b", "c"]}) == "a>b>c"
        for path, cycle in (
            (["b", "a"], ["ring-node/a", "ring-node/b", "ring-node/a"]),
            (["b", "c", "a"], ["ring-node/a", "ring-node/b", "ring-node/c", "ring-node/a"]),
            (["a"], ["ring-node/a", "ring-node/a"]),
        ):
            started = time.monotonic()
            with pytest.raises(DeadlockError) as caught:
                await silo.call("ring-node", "a", "relay", {"path": path})
            assert time.monotonic() - started < 0.1
            assert caught.value.detail == {"cycle": cycle}
        # A query may call back into a waiting actor: it does not need its turn.
        assert await silo.call("ring-node", "q", "peek", {"via": "nobody"}) == 0


async def test_events_hold_the_latest_value_and_can_be_awaited() -> None:
    async with local_silo(APP) as silo:
        assert await silo.get_event("publisher", "p", "progress", 0) == {
            "found": False,
            "value": None,
        }
        waiting = asyncio.ensure_future(silo.get_event("publisher", "p", "progress", 5))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        await silo.call("publisher", "p", "progress", {"percent": 10})
        assert await asyncio.wait_for(waiting, 1) == {"found": True, "value": {"percent": 10}}
        await silo.call("publisher", "p", "progress", {"percent": 60})
        with pytest.raises(ActorError):
            await silo.call("publisher", "p", "emit_then_fail", {})
        latest = await silo.get_event("publisher", "p", "progress", 0)
        assert latest["value"] == {"percent": 60}  # the failed invocation published nothing
        with pytest.raises(BadRequest, match="control"):
            await silo.get_event("publisher", "p", "bad\x01name", 0)
        assert isinstance(NotFound("x"), Exception)


async def test_streams_are_read_in_order_while_they_grow_until_closed() -> None:
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, stop=False) as silo:
        await silo.call("publisher", "p", "emit", {"words": ["a", "b"]})
        first = await silo.read_stream("publisher", "p", "log", after=-1)
        assert first == {"items": [[0, "a"], [1, "b"]], "closed": False, "next": 2}
        reader = asyncio.ensure_future(silo.read_stream("publisher", "p", "log", after=1, wait=5))
        await asyncio.sleep(0.02)
        assert not reader.done()
        written = time.monotonic()
        await silo.call("publisher", "p", "emit", {"words": ["c"]})
        got = await asyncio.wait_for(reader, 1)
        elapsed_ms = 1000 * (time.monotonic() - written)
        print(f"\nstream item reached a waiting reader {elapsed_ms:.2f} ms after the write call")
        assert got["items"] == [[2, "c"]]
        with pytest.raises(ActorError):
            await silo.call("publisher", "p", "emit_then_fail", {})
    # A crash and replay writes no item twice; the stream continues where it was.
    async with local_silo(APP, storage=storage) as silo:
        await silo.call("publisher", "p", "emit", {"words": ["d"], "close": True})
        everything = await silo.read_stream("publisher", "p", "log", after=-1)
        assert everything["items"] == [[0, "a"], [1, "b"], [2, "c"], [3, "d"]]
        assert everything["closed"] is True
        with pytest.raises(ActorError, match="closed"):
            await silo.call("publisher", "p", "emit", {"words": ["late"]})
        assert await silo.read_stream("publisher", "p", "log", after=3, wait=1) == {
            "items": [],
            "closed": True,
            "next": 4,
        }


class CountingStorage(MemoryStorage):
    """Counts kv reads: what a stream reader costs storage."""

    def __init__(self) -> None:
        super().__init__()
        self.kv_reads = 0

    async def kv_get(self, actor: ActorKey, keys: Sequence[str]) -> dict[str, bytes]:
        self.kv_reads += 1
        return await super().kv_get(actor, keys)


async def test_a_waiting_reader_takes_the_items_that_woke_it_without_reading_storage() -> None:
    storage = CountingStorage()
    async with local_silo(APP, storage=storage) as silo:
        await silo.call("publisher", "p", "emit", {"words": ["a"]})
        readers = [
            asyncio.ensure_future(silo.read_stream("publisher", "p", "log", after=0, wait=5))
            for _ in range(3)
        ]
        await asyncio.sleep(0.02)
        reads_before = storage.kv_reads
        await silo.call("publisher", "p", "emit", {"words": ["b", "c"], "close": True})
        got = await asyncio.gather(*readers)
        assert got == [{"items": [[1, "b"], [2, "c"]], "closed": True, "next": 3}] * 3
        assert storage.kv_reads == reads_before  # answered from the committed append


def test_an_append_answers_a_read_only_when_it_follows_on() -> None:
    append = StreamAppend("log", 5, [codec.pack("x"), codec.pack("y")], closed=True)
    assert _following(append, 4, 10) == {
        "items": [[5, "x"], [6, "y"]],
        "closed": True,
        "next": 7,
    }
    # Past the limit the rest is read later; closed only once everything was returned.
    assert _following(append, 4, 1) == {"items": [[5, "x"]], "closed": False, "next": 6}
    assert _following(append, 3, 10) is None  # item 4 lies between: read from storage
    assert _following(None, 4, 10) is None  # woken by something else


async def test_timers_run_turns_and_end_with_the_activation() -> None:
    clock = FakeClock()
    app = App([Publisher], SiloSettings(idle_timeout=100))
    async with local_silo(app, clock=clock) as silo:
        await silo.call("publisher", "t", "start_ticking", {"every": 10})
        await clock.advance(35)
        assert (await silo.call("publisher", "t", "read", {}))["ticks"] == 3
        assert await silo.call("publisher", "t", "stop_ticking", {}) is True
        await clock.advance(30)
        assert (await silo.call("publisher", "t", "read", {}))["ticks"] == 3
        await silo.call("publisher", "t", "start_ticking", {"every": 10})
        # Ticks are not activity: the actor is still passivated when idle, and its timer
        # ends with it.
        await clock.advance(200)
        assert len(silo.catalog) == 0
        assert (await silo.call("publisher", "t", "read", {}))["ticks"] > 3
        before = (await silo.call("publisher", "t", "read", {}))["ticks"]
        await clock.advance(50)
        assert (await silo.call("publisher", "t", "read", {}))["ticks"] == before


async def test_stateless_workers_run_locally_on_several_activations() -> None:
    app = App([Hasher, Sink])
    async with local_silo(app) as silo:
        digests = await asyncio.gather(
            *(silo.call("hasher", "any", "digest", {"text": str(i)}) for i in range(12))
        )
        assert len(set(digests)) == 12
        assert Hasher.peak == 3  # several at once, never more than max_activations
        assert silo.catalog.worker_pool(app.actors["hasher"]).activations == 3
        assert len(silo.catalog) == 0  # no ordinary activation, nothing journaled
        with pytest.raises(BadRequest, match="stateless"):
            await silo.tell("hasher", "any", "digest", {"text": "x"})
