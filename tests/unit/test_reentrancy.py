"""Reentrant actors: which turns interleave, and that interleaving loses no update.

Turns that interleave still commit one at a time; one under which another committed runs
again on the new state with its recorded steps. So the state equals what the journal,
replayed in order, rebuilds (checked after every scenario by reloading from storage),
and side effects run once however often a turn runs again.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bayou import (
    Actor,
    App,
    CallTimeout,
    DeadlockError,
    SiloSettings,
    actor,
    always_interleave,
    query,
)
from bayou.storage import MemoryStorage
from bayou.testing import local_silo
from tests.unit import reentrant_actors
from tests.unit.pattern_actors import RingNode
from tests.unit.reentrant_actors import (
    EFFECTS,
    Bouncer,
    ChainA,
    Door,
    Keeper,
    Log,
    ReentrantTally,
    gate,
)

APP = App([ChainA, Bouncer, Door, Keeper, ReentrantTally, RingNode], SiloSettings(snapshot_every=7))


@pytest.fixture(autouse=True)
def _fresh_gates() -> None:
    reentrant_actors.GATES.clear()
    EFFECTS.clear()


async def test_a_call_chain_reentrant_actor_takes_its_own_call_back() -> None:
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, stop=False) as silo:
        # chain-a/a -> bouncer/b -> chain-a/a: a DeadlockError for a non-reentrant actor.
        entries = await silo.call("chain-a", "a", "start", {"via": "b"})
        # The callback committed first; the waiting turn then ran again on top of it.
        assert entries == ["bounced", "start", "end"]
        assert await silo.call("chain-a", "a", "read", {}) == entries
        assert silo.catalog.metrics["turn_reruns"] >= 1
        # Not reentrant: the cycle is still refused at once.
        started = time.monotonic()
        with pytest.raises(DeadlockError):
            await silo.call("ring-node", "x", "relay", {"path": ["y", "x"]})
        assert time.monotonic() - started < 0.1
    async with local_silo(APP, storage=storage) as silo:  # replayed from the journal
        assert await silo.call("chain-a", "a", "read", {}) == ["bounced", "start", "end"]


async def test_call_chain_reentrancy_does_not_let_other_calls_in() -> None:
    async with local_silo(APP) as silo:
        waiting = asyncio.ensure_future(
            silo.call("chain-a", "a", "start", {"via": "b", "hold": "g"})
        )
        await asyncio.sleep(0.05)
        # A call from outside the chain waits for the turn in progress.
        outsider = asyncio.ensure_future(silo.call("chain-a", "a", "echo", {"tag": "outside"}))
        await asyncio.sleep(0.05)
        assert not outsider.done()
        gate("g").set()
        assert await asyncio.wait_for(waiting, 2) == ["bounced", "start", "end"]
        assert await asyncio.wait_for(outsider, 2) == 4
        assert await silo.call("chain-a", "a", "read", {}) == [
            "bounced",
            "start",
            "end",
            "outside",
        ]


async def test_an_always_interleave_handler_runs_while_a_turn_waits() -> None:
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, stop=False) as silo:
        waiting = asyncio.ensure_future(silo.call("door", "d", "wait_in", {"name": "k1"}))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        # knock opens the gate wait_in waits for: only interleaving lets it in.
        await asyncio.wait_for(silo.call("door", "d", "knock", {"name": "k1"}), 2)
        assert await asyncio.wait_for(waiting, 2) == ["knock", "waiting", "in"]
        # A handler without the mark queues behind a waiting turn.
        blocked = asyncio.ensure_future(silo.call("door", "d", "wait_in", {"name": "k2"}))
        await asyncio.sleep(0.05)
        with pytest.raises(CallTimeout):
            await silo.call("door", "d", "plain", {"tag": "late"}, timeout=0.2)
        gate("k2").set()
        await asyncio.wait_for(blocked, 2)
    async with local_silo(APP, storage=storage) as silo:
        entries = await silo.call("door", "d", "read", {})
    # The timed-out call was queued, not dropped: it ran after the turn it waited for.
    assert entries == ["knock", "waiting", "in", "waiting", "in", "late"]


async def test_interleaved_turns_lose_no_update_and_run_each_side_effect_once() -> None:
    storage = MemoryStorage()
    async with local_silo(APP, storage=storage, stop=False) as silo:
        replies = await asyncio.gather(
            *(silo.call("tally-r", "t", "add_slowly", {"n": n}) for n in range(1, 21))
        )
        state = await silo.call("tally-r", "t", "read", {})
        assert state["total"] == sum(range(1, 21))
        assert sorted(replies) == sorted(set(replies))  # each saw a distinct total
        assert max(replies) == 210
        assert sorted(EFFECTS) == sorted(f"t:{n}" for n in range(1, 21))  # once each
        assert silo.catalog.metrics["turn_reruns"] > 0  # they did interleave
        # The committed order is the order of the entries: replies are its running sums.
        order = [int(tag) for tag in state["entries"]]
        running = [sum(order[: i + 1]) for i in range(len(order))]
        assert sorted(replies) == running
    async with local_silo(APP, storage=storage) as silo:
        assert await silo.call("tally-r", "t", "read", {}) == state


async def test_one_idempotency_key_is_applied_once_even_when_calls_interleave() -> None:
    async with local_silo(APP) as silo:
        replies = await asyncio.gather(
            *(
                silo.call("tally-r", "k", "add_slowly", {"n": 5}, idempotency_key="same")
                for _ in range(5)
            ),
            silo.call("tally-r", "k", "add_slowly", {"n": 1}),
        )
        state = await silo.call("tally-r", "k", "read", {})
    assert state["total"] == 6
    assert len(set(replies[:5])) == 1  # every retry got the recorded reply
    assert EFFECTS.count("k:5") == 1


async def test_tells_to_a_reentrant_actor_keep_their_order_among_interleaved_calls() -> None:
    async with local_silo(APP) as silo:
        calls = [silo.call("tally-r", "o", "add_slowly", {"n": n}) for n in range(1, 11)]
        for i in range(30):
            await silo.tell("tally-r", "o", "note", {"tag": f"tell-{i}"}, message_id=f"m{i}")
        await asyncio.gather(*calls)

        async def all_applied() -> Log:
            for _ in range(200):
                state = Log.model_validate(await silo.call("tally-r", "o", "read", {}))
                if sum(e.startswith("tell-") for e in state.entries) == 30:
                    return state
                await asyncio.sleep(0.01)
            raise AssertionError("the tells were not all applied")

        state = await all_applied()
    tells = [e for e in state.entries if e.startswith("tell-")]
    assert tells == [f"tell-{i}" for i in range(30)]
    assert state.total == 55


def test_the_options_are_checked_when_the_class_is_declared() -> None:
    with pytest.raises(ValueError, match="reentrancy must be one of"):

        @actor("bad-r", reentrancy="sometimes")  # type: ignore[arg-type]
        class Bad(Actor[Log]):
            pass

    with pytest.raises(TypeError, match="always_interleave is for exclusive handlers"):

        @actor("bad-q")
        class BadQuery(Actor[Log]):
            @always_interleave
            @query
            async def peek(self) -> int:
                return 0
