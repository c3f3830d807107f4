"""The runtime's semantics on one in-process silo over the memory store (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from bayou import (
    Actor,
    ActorError,
    App,
    CallTimeout,
    DeadlockError,
    IdempotencyKeyReused,
    InvalidArguments,
    SiloSettings,
    StorageError,
    UnknownActorType,
    UnknownMethod,
    actor,
)
from bayou.runtime.records import InvocationRecord
from bayou.storage import MemoryStorage
from bayou.testing import FakeClock, local_silo
from tests.unit.actors import (
    GATES,
    LIFECYCLE,
    SIDE_EFFECTS,
    Caller,
    Ledger,
    Recorder,
    Trace,
    gate,
)


def make_app(**settings: object) -> App:
    return App([Recorder, Ledger, Caller], SiloSettings(**settings))


@pytest.fixture(autouse=True)
def _reset() -> None:
    SIDE_EFFECTS.clear()
    GATES.clear()
    LIFECYCLE.clear()


async def test_exclusive_turns_never_interleave() -> None:
    async with local_silo(make_app()) as silo:
        calls = [silo.call("recorder", "r", "slow", {"tag": str(i)}) for i in range(30)]
        await asyncio.gather(*calls)
        events = (await silo.call("recorder", "r", "read", {}))["events"]
    assert len(events) == 60
    for i in range(0, 60, 2):
        start, end = events[i], events[i + 1]
        assert start.startswith("start:") and end == "end:" + start.split(":", 1)[1]


async def test_queries_interleave_and_read_committed_state() -> None:
    async with local_silo(make_app()) as silo:
        await silo.call("recorder", "q", "add", {"n": 5})
        held = asyncio.ensure_future(silo.call("recorder", "q", "slow", {"tag": "x", "hold": "g"}))
        await asyncio.sleep(0.01)
        assert not held.done()
        # The exclusive turn is parked mid-handler; the query still runs, and sees only
        # committed state, not the half-done turn's "start:x".
        state = await silo.call("recorder", "q", "read", {}, timeout=1)
        assert state["total"] == 5 and state["events"] == []
        gate("g").set()
        assert await held == ["start:x", "end:x"]
        assert (await silo.call("recorder", "q", "read", {}))["events"] == ["start:x", "end:x"]


async def test_replay_rebuilds_exactly_the_state_before_a_crash() -> None:
    storage = MemoryStorage()
    app = make_app(snapshot_every=7)
    async with local_silo(app, storage=storage, stop=False) as silo:
        for i in range(1, 24):
            await silo.call("recorder", "r", "add", {"n": i})
        await silo.call("recorder", "r", "slow", {"tag": "t"})
        before = await silo.call("recorder", "r", "read", {})
    # Snapshots every 7 records: 24 records leave 3 in the journal to replay.
    async with local_silo(app, storage=storage) as silo:
        after = await silo.call("recorder", "r", "read", {})
        activation = silo.catalog.activations()[0]
        assert activation.replayed == 24 % 7
    assert after == before and after["total"] == sum(range(1, 24))


async def test_ctx_run_is_not_executed_again_on_replay() -> None:
    storage = MemoryStorage()
    app = make_app(snapshot_every=1000)
    async with local_silo(app, storage=storage, stop=False) as silo:
        first = await silo.call("recorder", "e", "effect", {"name": "a"})
        second = await silo.call("recorder", "e", "effect", {"name": "b"})
        before = await silo.call("recorder", "e", "read", {})
    assert SIDE_EFFECTS == ["a", "b"]
    async with local_silo(app, storage=storage) as silo:
        after = await silo.call("recorder", "e", "read", {})
        assert silo.catalog.activations()[0].replayed == 2
    assert SIDE_EFFECTS == ["a", "b"]  # replay took the recorded results
    # Recorded time and randomness replayed to the same values, so the state is identical.
    assert after == before
    assert before["events"][0] == f"{first['result']}|{first['stamp']}|{first['draw']}"
    assert before["events"][1].startswith(second["result"])


async def test_ctx_run_step_is_durable_before_the_handler_goes_on() -> None:
    storage = MemoryStorage()
    app = make_app()
    async with local_silo(app, storage=storage, stop=False) as silo:
        pending = asyncio.ensure_future(
            silo.call(
                "recorder", "s", "effect", {"name": "pay", "hold": "never"}, idempotency_key="k1"
            )
        )
        await asyncio.sleep(0.01)
        actor = silo.catalog.actor_key("recorder", "s")
        steps = await storage.steps_read(actor, "k1")
        assert len(steps) == 1  # persisted while the handler is still parked after it
        assert SIDE_EFFECTS == ["pay"]
    with pytest.raises(Exception):  # noqa: B017 - the crash fails the caller somehow
        await pending
    # The caller retries with the same key on a restarted silo: the effect is not repeated.
    async with local_silo(app, storage=storage) as silo:
        reply = await silo.call(
            "recorder", "s", "effect", {"name": "pay", "hold": ""}, idempotency_key="k1"
        )
        assert reply["result"] == "done:pay:1"
        assert await storage.steps_read(silo.catalog.actor_key("recorder", "s"), "k1") == []
    assert SIDE_EFFECTS == ["pay"]


async def test_idempotency_key_applies_once_also_after_restart_and_snapshot() -> None:
    storage = MemoryStorage()
    app = make_app(snapshot_every=2)
    async with local_silo(app, storage=storage, stop=False) as silo:
        assert await silo.call("recorder", "i", "add", {"n": 10}, idempotency_key="a") == 10
        assert await silo.call("recorder", "i", "add", {"n": 10}, idempotency_key="a") == 10
        assert await silo.call("recorder", "i", "add", {"n": 1}, idempotency_key="b") == 11
        assert await silo.call("recorder", "i", "add", {"n": 1}, idempotency_key="c") == 12
        with pytest.raises(IdempotencyKeyReused):
            await silo.call("recorder", "i", "add", {"n": 99}, idempotency_key="a")
    async with local_silo(app, storage=storage) as silo:
        # "a" and "b" now live only in the snapshot's dedup window, "c" in the journal.
        assert await silo.call("recorder", "i", "add", {"n": 10}, idempotency_key="a") == 10
        assert await silo.call("recorder", "i", "add", {"n": 1}, idempotency_key="c") == 12
        assert (await silo.call("recorder", "i", "read", {}))["total"] == 12


async def test_dedup_window_is_bounded() -> None:
    async with local_silo(make_app(dedup_window_size=5, dedup_window_age=1)) as silo:
        for i in range(40):
            await silo.call("recorder", "w", "add", {"n": 1}, idempotency_key=f"k{i}")
        activation = silo.catalog.activations()[0]
        await activation.snapshot()
        assert len(activation.dedup.entries) <= 50  # hard bound: ten times the size


async def test_handler_error_is_recorded_and_discards_its_state_change() -> None:
    storage = MemoryStorage()
    async with local_silo(make_app(), storage=storage) as silo:
        await silo.call("recorder", "f", "add", {"n": 1})
        with pytest.raises(ActorError) as caught:
            await silo.call("recorder", "f", "fail_after_add", {"n": 5}, idempotency_key="x")
        assert caught.value.message == "refusing 5"
        assert caught.value.exception_type == "ValueError"
        assert (await silo.call("recorder", "f", "read", {}))["total"] == 1
        # The failure is the invocation's recorded outcome: a retry gets it, not a re-run.
        with pytest.raises(ActorError, match="refusing 5"):
            await silo.call("recorder", "f", "fail_after_add", {"n": 5}, idempotency_key="x")
        records = await storage.read_journal(silo.catalog.actor_key("recorder", "f"))
        decoded = [InvocationRecord.decode(r.data) for r in records]
        assert [r.outcome.error is not None for r in decoded] == [False, True]


async def test_entity_kv_writes_commit_with_the_record_or_not_at_all() -> None:
    storage = MemoryStorage()
    async with local_silo(make_app(), storage=storage, stop=False) as silo:
        assert await silo.call("ledger", "l", "put", {"k": "a", "v": 3}) == 3
        with pytest.raises(ActorError, match="boom"):
            await silo.call("ledger", "l", "put", {"k": "b", "v": 4, "fail": True})
        assert await silo.call("ledger", "l", "get", {"k": "b"}) is None
        assert await silo.call("ledger", "l", "put", {"k": "c", "v": 5}) == 8
    async with local_silo(make_app(), storage=storage) as silo:
        assert await silo.call("ledger", "l", "total", {}) == 8
        assert await silo.call("ledger", "l", "get", {"k": "a"}) == 3
        assert await silo.call("ledger", "l", "get", {"k": "b"}) is None


async def test_passivation_after_idle_timeout_with_a_fake_clock() -> None:
    clock = FakeClock()
    storage = MemoryStorage()
    async with local_silo(make_app(idle_timeout=300), storage=storage, clock=clock) as silo:
        await silo.call("recorder", "p", "add", {"n": 2})
        await clock.advance(200)
        assert len(silo.catalog) == 1
        await clock.advance(200)  # past 300 s idle; the collector runs every 75 s
        assert len(silo.catalog) == 0
        assert LIFECYCLE == ["activate:p", "deactivate:p"]
        snapshot = await storage.read_snapshot(silo.catalog.actor_key("recorder", "p"))
        assert snapshot is not None and snapshot.seq == 1
        # The next message reactivates it from the snapshot, with nothing to replay.
        assert await silo.call("recorder", "p", "add", {"n": 3}) == 5
        assert silo.catalog.activations()[0].replayed == 0
        assert LIFECYCLE == ["activate:p", "deactivate:p", "activate:p"]


async def test_an_actor_with_new_records_is_snapshotted_by_age() -> None:
    clock = FakeClock()
    storage = MemoryStorage()
    app = make_app(idle_timeout=10_000, snapshot_interval=60, snapshot_every=1000)
    async with local_silo(app, storage=storage, clock=clock) as silo:
        await silo.call("recorder", "a", "add", {"n": 1})
        key = silo.catalog.actor_key("recorder", "a")
        assert await storage.read_snapshot(key) is None
        await clock.advance(90)
        snapshot = await storage.read_snapshot(key)
        assert snapshot is not None and snapshot.seq == 1
        assert len(silo.catalog) == 1


async def test_tells_are_applied_once_in_order_and_survive_a_crash() -> None:
    storage = MemoryStorage()
    app = make_app()
    async with local_silo(app, storage=storage, stop=False) as silo:
        # Park the actor in a turn so the tells stay in its inbox.
        parked = asyncio.ensure_future(
            silo.call("recorder", "t", "slow", {"tag": "p", "hold": "h"})
        )
        await asyncio.sleep(0.01)
        ids = [await silo.tell("recorder", "t", "add", {"n": n}) for n in (1, 2, 3)]
        assert await silo.tell("recorder", "t", "add", {"n": 1}, message_id=ids[0]) == ids[0]
    with pytest.raises(Exception):  # noqa: B017
        await parked
    async with local_silo(app, storage=storage) as silo:
        # The restarted silo wakes actors with waiting tells; each is applied exactly once.
        for _ in range(100):
            state = await silo.call("recorder", "t", "read", {})
            if state["total"] == 6:
                break
            await asyncio.sleep(0.01)
        assert state["total"] == 6
        key = silo.catalog.actor_key("recorder", "t")
        assert await storage.inbox_read(key) == []
        records = [InvocationRecord.decode(r.data) for r in await storage.read_journal(key)]
        assert [r.args["n"] for r in records if r.method == "add"] == [1, 2, 3]


async def test_actor_to_actor_call_is_exactly_once_and_replayed_from_the_record() -> None:
    storage = MemoryStorage()
    app = make_app()
    async with local_silo(app, storage=storage, stop=False) as silo:
        assert await silo.call("caller", "c", "forward", {"target": "x", "n": 4}) == 4
        assert await silo.call("caller", "c", "forward", {"target": "x", "n": 4}) == 8
    async with local_silo(app, storage=storage) as silo:
        assert (await silo.call("caller", "c", "read", {}))["total"] == 8
        assert (await silo.call("recorder", "x", "read", {}))["total"] == 8
        with pytest.raises(DeadlockError, match="call cycle caller/d -> caller/d"):
            await silo.call("caller", "d", "self_call", {})


async def test_clear_errors_for_unknown_names_and_bad_arguments() -> None:
    async with local_silo(make_app()) as silo:
        with pytest.raises(UnknownActorType):
            await silo.call("nope", "k", "add", {"n": 1})
        with pytest.raises(UnknownMethod):
            await silo.call("recorder", "k", "nope", {})
        with pytest.raises(InvalidArguments) as caught:
            await silo.call("recorder", "k", "add", {"n": "many"})
        assert caught.value.detail[0]["field"] == "n"
        with pytest.raises(InvalidArguments) as caught:
            await silo.call("recorder", "k", "add", {"n": 1, "extra": 2})
        assert caught.value.detail[0]["field"] == "extra"
        with pytest.raises(InvalidArguments):
            await silo.call("recorder", "k", "add", {})


def test_a_handler_cannot_take_the_name_of_an_actor_route() -> None:
    class Topical(Actor[Trace]):
        async def topics(self) -> None:
            pass

    with pytest.raises(TypeError, match="topics"):
        actor("topical")(Topical)


async def test_a_call_that_cannot_finish_in_time_times_out_and_still_commits() -> None:
    async with local_silo(make_app()) as silo:
        with pytest.raises(CallTimeout):
            await silo.call(
                "recorder",
                "slow",
                "slow",
                {"tag": "a", "hold": "late"},
                timeout=0.05,
                idempotency_key="late-1",
            )
        gate("late").set()
        # The turn ran to its commit; the retry is answered from the record.
        reply = await silo.call(
            "recorder", "slow", "slow", {"tag": "a", "hold": "late"}, idempotency_key="late-1"
        )
        assert reply == ["start:a", "end:a"]


class LosesCommitReplies(MemoryStorage):
    """Applies a commit, then reports failure: the reply of a write was lost."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next = 0

    async def commit(self, batch):  # type: ignore[no-untyped-def]
        results = await super().commit(batch)
        if self.lose_next:
            self.lose_next -= 1
            raise ConnectionResetError("reply lost")
        return results


async def test_a_commit_whose_outcome_is_unknown_reloads_the_actor() -> None:
    storage = LosesCommitReplies()
    async with local_silo(make_app(), storage=storage) as silo:
        assert await silo.call("recorder", "u", "add", {"n": 1}) == 1
        storage.lose_next = 1
        with pytest.raises(StorageError):
            await silo.call("recorder", "u", "add", {"n": 2}, idempotency_key="u-2")
        # The write did land; the reloaded activation knows it, and the retry is answered
        # from the record instead of adding 2 again.
        assert await silo.call("recorder", "u", "add", {"n": 2}, idempotency_key="u-2") == 3
        assert (await silo.call("recorder", "u", "read", {}))["total"] == 3


@actor("broken")
class Broken(Actor[Trace]):
    async def on_activate(self) -> None:
        raise KeyError("config missing")

    async def ping(self) -> None:
        return None


async def test_a_failing_on_activate_is_a_typed_error_and_is_retried_next_time() -> None:
    async with local_silo(App([Broken])) as silo:
        for _ in range(2):
            with pytest.raises(ActorError, match="config missing") as caught:
                await silo.call("broken", "b", "ping", {})
            assert caught.value.exception_type == "KeyError"
        assert len(silo.catalog) == 0
