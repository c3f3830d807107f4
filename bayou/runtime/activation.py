"""One activation: an actor loaded in memory, its mailbox, and the turns it runs.

Exclusive messages (calls and tells) run one at a time on a private copy of the state; a
turn's journal record is committed (fenced, group-committed) before its reply is released
and before its state becomes the actor's. Queries run at once against committed state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
)

from pydantic import BaseModel, ValidationError

from bayou import codec
from bayou.errors import (
    RETRYABLE,
    BayouError,
    FencedWrite,
    IdempotencyKeyReused,
    NonDeterminismError,
    StorageError,
    Unavailable,
)
from bayou.ids import unique_id
from bayou.model import Actor, ActorBase, ActorSpec, HandlerSpec, current_invocation
from bayou.runtime.effects import (
    Effects,
    StreamAppend,
    StreamMeta,
    effect_writes,
    stream_meta_key,
)
from bayou.runtime.handler_results import actor_error, dump_result
from bayou.runtime.interleaving import Interleaving
from bayou.runtime.invocation import SEND_METHOD, InvocationContext
from bayou.runtime.kv_cache import KVCache
from bayou.runtime.outbox import Outbox, OutgoingTell
from bayou.runtime.records import (
    DedupEntry,
    DedupWindow,
    InvocationRecord,
    Outcome,
    SnapshotBody,
    Step,
    fingerprint,
)
from bayou.runtime.reminders import next_due
from bayou.runtime.state_copy import working_copy
from bayou.runtime.timers import Timers
from bayou.runtime.workflow_commits import append_to_topic
from bayou.runtime.workflows import WorkflowContext, WorkflowRun
from bayou.storage.contract import (
    ActorKey,
    Commit,
    Fence,
    InboxMessage,
    InboxPut,
    JournalRecord,
    Reminder,
    Snapshot,
    SnapshotPut,
)

if TYPE_CHECKING:
    from bayou.runtime.catalog import Catalog

log = logging.getLogger("bayou.activation")

Status = Literal["loading", "active", "deactivating", "closed"]

# How long deactivation waits for outgoing tells before giving up on the final snapshot.
# Short: a tell not out by then is sent again by the next activation (its record stays in
# the journal), while a long wait holds a whole hand-off up, and can wait on itself when
# the tell's receiver is in a partition this silo is still to hand off.
OUTBOX_DRAIN_WAIT = 1.0


@dataclass(slots=True)
class Message:
    """An exclusive message: a call (with a waiting caller) or a tell (from the inbox)."""

    method: str
    args: dict[str, Any]
    kwargs: dict[str, Any] | None = None  # validated at the edge; None = validate here
    idempotency_key: str | None = None
    inbox_id: str | None = None
    chain: tuple[str, ...] = ()  # actors whose turns wait on this call (deadlock detection)
    tick: bool = False  # sent by a timer: not activity, for passivation
    reminder: Reminder | None = None  # the reminder this message fires; its turn moves it on


_SNAPSHOT = object()  # mailbox item asking for a snapshot between turns


class Activation:
    """An actor (or entity) instance in memory, and everything needed to run its turns.

    A silo holds up to millions of idle activations, so an activation is slotted and makes
    its mailbox, kv cache, outbox, timers, locks, events and futures only when first used:
    an idle one is little more than its identity, its state and its dedup window.
    """

    __slots__ = (
        "_busy",
        "_closed",
        "_dedup",
        "_inbox_ids",
        "_interleaving",
        "_kv_cache",
        "_loaded",
        "_outbox",
        "_pending_steps",
        "_queue",
        "_quiet",
        "_quiet_event",
        "_run_steps",
        "_run_waiters",
        "_runs",
        "_stream_metas",
        "_timers",
        "_turn_lock",
        "_worker",
        "actor_key",
        "catalog",
        "clock",
        "fence",
        "instance",
        "key",
        "last_snapshot",
        "last_used",
        "replayed",
        "seq",
        "snapshot_seq",
        "spec",
        "status",
    )

    def __init__(self, catalog: Catalog, spec: ActorSpec, key: str, actor_key: ActorKey) -> None:
        self.catalog = catalog
        self.spec = spec
        self.key = key
        self.actor_key = actor_key
        self.clock = catalog.clock
        self.status: Status = "loading"
        self.fence: Fence | None = None
        self.instance: ActorBase = spec.cls()
        self.instance.key = key
        self._dedup: DedupWindow | None = None
        self.seq = 0
        self.snapshot_seq = 0
        self.replayed = 0
        self.last_used = self.clock.monotonic()
        self.last_snapshot = self.last_used
        self._kv_cache: KVCache | None = None
        self._queue: deque[tuple[Any, asyncio.Future[Any]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._busy = 0  # queries and tell acceptances in flight
        # Quiet: no worker and nothing in flight. The event exists only while awaited.
        self._quiet = True
        self._quiet_event: asyncio.Event | None = None
        self._inbox_ids: set[str] | None = None
        self._pending_steps: dict[str, list[Step]] | None = None
        self._stream_metas: dict[str, StreamMeta] | None = None
        self._outbox: Outbox | None = None
        self._timers: Timers | None = None
        # Exclusive turns and running workflows' code between their durable waits.
        self._turn_lock: asyncio.Lock | None = None
        self._runs: dict[str, WorkflowRun] | None = None
        self._run_steps: dict[str, list[Step]] | None = None  # steps of runs not yet resumed
        self._run_waiters: dict[str, list[asyncio.Future[Any]]] | None = None
        self._loaded: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        # Turns in flight at once and their commit order: only for reentrant actors.
        self._interleaving: Interleaving | None = Interleaving(self) if spec.interleaves else None
        # What ActorBase.set_timer reaches its timers through (made on first use). Set as
        # an attribute: touching ``__dict__`` would make the instance grow a real dict.
        self.instance._bayou_activation = self

    def __repr__(self) -> str:
        return f"<Activation {self.actor_key} {self.status} seq={self.seq}>"

    # -- made on first use -----------------------------------------------------------------

    @property
    def kv_cache(self) -> KVCache:
        cache = self._kv_cache
        if cache is None:
            cache = self._kv_cache = KVCache(self.catalog.settings.kv_cache_entries)
        return cache

    @property
    def dedup(self) -> DedupWindow:
        """Recent idempotency keys and their outcomes (most idle actors have none)."""
        window = self._dedup
        if window is None:
            settings = self.catalog.settings
            window = DedupWindow(settings.dedup_window_size, settings.dedup_window_age)
            self._dedup = window
        return window

    @property
    def ident(self) -> str:
        """``type/key``: how call chains name this actor."""
        return f"{self.spec.type_name}/{self.key}"

    def commit_gate(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Held around a commit that another turn may race (reentrant actors only)."""
        if self._interleaving is None:
            return contextlib.nullcontext()
        return self._interleaving.committing()

    @property
    def interleaving(self) -> Interleaving:
        interleaving = self._interleaving
        assert interleaving is not None, "only reentrant actors interleave turns"
        return interleaving

    @property
    def outbox(self) -> Outbox:
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = Outbox(self)
        return outbox

    @property
    def timers(self) -> Timers:
        timers = self._timers
        if timers is None:
            timers = self._timers = Timers(self)
        return timers

    @property
    def turn_lock(self) -> asyncio.Lock:
        lock = self._turn_lock
        if lock is None:
            lock = self._turn_lock = asyncio.Lock()
        return lock

    @property
    def runs(self) -> dict[str, WorkflowRun]:
        """Running workflow runs by id."""
        runs = self._runs
        if runs is None:
            runs = self._runs = {}
        return runs

    @property
    def run_steps(self) -> dict[str, list[Step]]:
        steps = self._run_steps
        if steps is None:
            steps = self._run_steps = {}
        return steps

    @property
    def inbox_ids(self) -> set[str]:
        ids = self._inbox_ids
        if ids is None:
            ids = self._inbox_ids = set()
        return ids

    @property
    def loaded(self) -> asyncio.Future[None]:
        """Resolved when the load ends: with None, or with the load's failure."""
        fut = self._loaded
        if fut is None:
            fut = self._loaded = asyncio.get_running_loop().create_future()
            if self.status != "loading":
                fut.set_result(None)
        return fut

    def load_finished(self, error: BaseException | None = None) -> None:
        """Tell whoever waits for the load (``loaded``) how it ended."""
        if error is None:
            if self._loaded is not None and not self._loaded.done():
                self._loaded.set_result(None)
            self._loaded = None  # its waiters hold it; later askers get a resolved one
            return
        fut = self._loaded
        if fut is None or fut.done():
            fut = self._loaded = asyncio.get_running_loop().create_future()
        if isinstance(error, Exception):
            fut.set_exception(error)
            fut.exception()  # retrieved: waiters got it via shield
        else:
            fut.cancel()

    @property
    def closed(self) -> asyncio.Future[None]:
        """Resolved once the activation is closed."""
        fut = self._closed
        if fut is None:
            fut = self._closed = asyncio.get_running_loop().create_future()
            if self.status == "closed":
                fut.set_result(None)
        return fut

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """Claim the partition, rebuild state from snapshot + journal, queue waiting tells."""
        self.fence = await self.catalog.ownership.fence(self.actor_key.partition)
        # Snapshot, journal after it, pending steps and inbox: one round trip.
        stored = await self.catalog.storage.load_actor(self.actor_key)
        snapshot = stored.snapshot
        state: Any = None
        if snapshot is not None:
            body = SnapshotBody.decode(snapshot.data)
            self.dedup.load(body.dedup)
            if body.workflows:
                self._run_steps = {run: list(steps) for run, steps in body.workflows.items()}
            self.seq = self.snapshot_seq = snapshot.seq
            state = body.state
        if self.spec.state_model is not None:
            assert isinstance(self.instance, Actor)
            self.instance._committed = self._initial_state(self.spec.state_model, state)
        records = [record for record in stored.journal if record.seq > self.seq]
        resend: list[OutgoingTell] = []
        for record in records:
            resend += await self._replay(record)
        self.replayed = len(records)
        if stored.steps:
            self._pending_steps = {
                invocation: [codec.unpack(step) for step in steps]
                for invocation, steps in stored.steps.items()
            }
        for message in stored.inbox:
            self._queue_tell(message)
        await self.instance.on_activate()
        self.status = "active"
        self.last_snapshot = self.last_used = self.clock.monotonic()
        # Tells of records since the snapshot may not have left before a crash; receivers
        # recognise their ids, so sending them again is safe.
        if resend:
            self.outbox.send(resend)
        self._start_worker()

    def _initial_state(self, model: type[BaseModel], data: Any) -> BaseModel:
        if data is None:
            try:
                return model()
            except ValidationError as exc:
                raise TypeError(
                    f"{self.spec.type_name}: state model {model.__name__} needs defaults for "
                    f"every field, since a new actor starts from {model.__name__}()"
                ) from exc
        return model.model_validate(data)

    async def _replay(self, stored: JournalRecord) -> list[OutgoingTell]:
        """Re-run one record's handler with its recorded steps; returns its tells."""
        record = InvocationRecord.decode(stored.data)
        if record.kind == "segment" and record.run is not None:
            self.run_steps.setdefault(record.run, []).extend(record.steps)
        elif record.kind == "workflow" and record.run is not None and self._run_steps:
            self._run_steps.pop(record.run, None)
        if (
            record.kind == "call"
            and record.outcome.error is None
            and isinstance(self.instance, Actor)
        ):
            handler = self.spec.handlers.get(record.method)
            if handler is None:
                raise NonDeterminismError(
                    f"{self.actor_key}: journal record {stored.seq} calls {record.method!r}, "
                    "which the actor class no longer has"
                )
            ctx = InvocationContext(
                self,
                record.idempotency_key or f"replay-{stored.seq}",
                mode="replay",
                recorded=record.steps,
                working_state=self.instance._committed,
            )
            token = current_invocation.set(ctx)
            try:
                await getattr(self.instance, record.method)(**handler.validate_args(record.args))
            except NonDeterminismError:
                raise
            except Exception as exc:
                raise NonDeterminismError(
                    f"{self.actor_key}: replaying record {stored.seq} ({record.method}) raised "
                    f"{type(exc).__name__}: {exc}, but it succeeded when it was journaled"
                ) from exc
            finally:
                current_invocation.reset(token)
            assert ctx.working_state is not None
            self.instance._committed = ctx.working_state
        if record.idempotency_key is not None:
            self.dedup.add(
                record.idempotency_key,
                DedupEntry(
                    stored.seq,
                    fingerprint(record.method, record.args),
                    record.outcome,
                    record.committed_at,
                ),
            )
        self.seq = stored.seq
        return [OutgoingTell.from_record(row) for row in record.outbox]

    async def deactivate(self) -> None:
        """Finish queued turns, run ``on_deactivate``, snapshot, and close."""
        if self.status == "loading":
            # A hand-off can catch an activation mid-load: let the load finish first.
            await asyncio.wait([self.loaded])  # returns when done, whatever the outcome
        if self.status == "active":
            self.status = "deactivating"
            try:
                # Running workflows are durable up to their last segment: stop them (their
                # start message stays in the inbox) so the next activation resumes them.
                await self._stop_runs()
                await self._until_quiet()
                await self.instance.on_deactivate()
                if self._timers is not None:
                    self._timers.cancel_all()
                # Records whose tells are not out yet stay in the journal, to be sent again
                # by the next activation; so snapshot only once the outbox is empty.
                outbox = self._outbox
                if outbox is None or await outbox.wait_idle(OUTBOX_DRAIN_WAIT):
                    await self.snapshot()
            except FencedWrite:
                self.catalog.ownership.forget(self.actor_key.partition)
            except Exception:
                log.exception("deactivating %s failed; the journal still has every turn", self)
            finally:
                self._close()
        elif not self.closed.done():
            await asyncio.shield(self.closed)

    def _close(self, reason: BaseException | None = None) -> None:
        self.status = "closed"
        if self._timers is not None:
            self._timers.cancel_all()
        if self._interleaving is not None:
            self._interleaving.cancel_all()
        for run in list(self._runs.values()) if self._runs else ():
            if run.task is not None:
                run.task.cancel()
        if self._outbox is not None:
            self._outbox.stop()
        queue = self._queue
        while queue:
            _, fut = queue.popleft()
            if not fut.done():
                fut.set_exception(reason or Unavailable(f"{self.actor_key} was deactivated"))
        self.catalog.forget(self)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def abandon(self) -> None:
        """Stop at once without writing anything (a simulated crash)."""
        if self._worker is not None:
            self._worker.cancel()
        self._close(Unavailable(f"{self.actor_key}: the silo stopped"))

    def lose_ownership(self) -> None:
        """Storage rejected our fence: another silo owns the partition now. Drop everything."""
        log.warning("%s: fenced write rejected; dropping the activation", self.actor_key)
        self.catalog.ownership.forget(self.actor_key.partition)
        self._close(Unavailable(f"{self.actor_key} moved to another silo; retry"))

    def is_idle(self) -> bool:
        """Whether the activation may be passivated: nothing queued or in flight, every
        tell it sent delivered, and any workflow run parked in a durable wait that a wake
        reminder or a message ends."""
        if self.status != "active" or not self._quiet or self._queue:
            return False
        if self._outbox is not None and not self._outbox.idle():
            return False  # its snapshot would wait for the tells; keep sending them
        runs = self._runs
        if not runs:
            return True
        now, idle_timeout = self.clock.time(), self.catalog.settings.idle_timeout
        return all(run.may_passivate(now, idle_timeout) for run in runs.values())

    def close_after_storage_error(self, exc: BaseException) -> None:
        log.warning("%s: storage failed (%s); reloading on next use", self, exc)
        self._close(Unavailable(f"{self.actor_key} is reloading; retry"))
        # The tells its mailbox held are still in the inbox: run them without waiting for
        # the actor's next message.
        self.catalog.wake_later(self.actor_key.partition)

    async def _stop_runs(self) -> None:
        if not self._runs:
            return
        # Keep each run's committed steps before cancelling it: a cancelled run removes
        # itself from the activation on its way out.
        for run in list(self._runs.values()):
            committed = run.ctx.steps[: run.ctx.persisted] if run.ctx is not None else run.recorded
            self.run_steps[run.run_id] = committed
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.runs.clear()

    # -- the mailbox -----------------------------------------------------------------------

    def call(self, message: Message) -> asyncio.Future[Any]:
        """Queue an exclusive message (or, if it may interleave, start its turn now); the
        future resolves once its turn is committed."""
        if self.status != "active":
            raise Unavailable(f"{self.actor_key} is {self.status}")
        if self.spec.interleaves and self._may_interleave(message):
            return self.interleaving.start(message)
        return self._enqueue(message)

    def _may_interleave(self, message: Message) -> bool:
        handler = self.spec.handlers.get(message.method)
        if handler is None or handler.kind != "exclusive":
            return False
        reentrancy = self.spec.reentrancy
        if handler.interleave or reentrancy == "full":
            return True
        return reentrancy == "call_chain" and self.ident in message.chain

    def _retry_later(self, message: Message, delay: float = 0.5) -> None:
        def requeue() -> None:
            if self.status == "active":
                self._enqueue(message)

        asyncio.get_running_loop().call_later(delay, requeue)

    def post_timer_tick(self, method: str, args: dict[str, Any]) -> bool:
        """Queue a timer's turn; False once the activation is going away."""
        if self.status != "active":
            return False
        self._enqueue(Message(method, args, tick=True))
        return True

    def request_snapshot(self) -> None:
        if self.status == "active":
            self._enqueue(_SNAPSHOT)

    def request_snapshot_if_due(self) -> None:
        if self._snapshot_due():
            self.request_snapshot()

    def busy(self, delta: int) -> None:
        """Count work in flight outside the mailbox loop (deactivation waits for it)."""
        self._busy += delta
        if delta < 0:
            self.last_used = self.clock.monotonic()
            self._update_quiet()
        else:
            self._set_quiet(False)

    def _enqueue(self, item: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.catalog.loop.create_future()
        # A caller that timed out no longer awaits its future; consume its outcome here.
        fut.add_done_callback(_consume)
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append((item, fut))
        if self.status != "loading":
            self._start_worker()
        return fut

    def _start_worker(self) -> None:
        if self._worker is None and self._queue:
            self._set_quiet(False)
            self._worker = self.catalog.loop.create_task(self._drain())

    async def _drain(self) -> None:
        active = False  # whether a turn other than a timer tick ran (idle time)
        queue = self._queue
        assert queue is not None
        try:
            while queue and self.status != "closed":
                item, fut = queue.popleft()
                active = active or not (isinstance(item, Message) and item.tick)
                if item is _SNAPSHOT:
                    await self._guarded(self.snapshot, fut)
                    continue
                if not await self.run_message(item, fut, exclusive=True):
                    return
                if self._snapshot_due():
                    await self._guarded(self.snapshot, None)
        finally:
            self._worker = None
            if active:
                self.last_used = self.clock.monotonic()
            if not queue:
                self._queue = None  # an idle activation keeps no mailbox
            self._update_quiet()

    async def run_message(
        self, item: Message, fut: asyncio.Future[Any], *, exclusive: bool
    ) -> bool:
        """Run one message's turn and settle ``fut`` with its outcome; False once the
        activation had to close (its ownership or its storage failed). ``exclusive=False``
        for a turn that interleaves: it takes no turn lock."""
        if not self.catalog.lease_ok():
            # The silo cannot confirm it still owns this actor (frozen, or cut off from
            # membership): start no turn. Calls fail over to a retry; stored tells wait in
            # the inbox and are tried again.
            if not fut.done():
                fut.set_exception(Unavailable(f"{self.actor_key}: lease unconfirmed"))
            if item.inbox_id is not None:
                self._retry_later(item, 1.0)
            return True
        handler = self.spec.handlers.get(item.method)
        if handler is not None and handler.kind == "workflow":
            self._start_run(item)
            if not fut.done():
                fut.set_result(None)
            return True
        try:
            if not exclusive or (self._turn_lock is None and not self._runs):
                # No workflow run exists (each takes the lock before its code runs), and
                # only the mailbox loop starts one: nothing to exclude.
                result = await self._turn(item)
            else:
                async with self.turn_lock:
                    result = await self._turn(item)
        except FencedWrite:
            if not fut.done():
                fut.set_exception(Unavailable(f"{self.actor_key} moved; retry"))
            self.lose_ownership()
            return False
        except StorageError as exc:
            # Whether the write landed is unknown (a lost reply looks like a failure), so
            # memory can no longer be trusted to match storage: reload on next use.
            if not fut.done():
                fut.set_exception(exc)
            self.close_after_storage_error(exc)
            return False
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception) else Unavailable())
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, RETRYABLE) and item.inbox_id is not None:
                # A stored tell whose turn failed for reasons outside the handler: it
                # stays in the inbox, so try it again shortly.
                self._retry_later(item)
        else:
            if not fut.done():
                fut.set_result(result)
        return True

    async def _guarded(self, action: Callable[[], Any], fut: asyncio.Future[Any] | None) -> None:
        try:
            await action()
        except FencedWrite:
            self.lose_ownership()
        except Exception:
            log.exception("%s: snapshot failed; will retry after the next turn", self.actor_key)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def update_quiet(self) -> None:
        self._update_quiet()

    def _update_quiet(self) -> None:
        self._set_quiet(self._worker is None and self._busy == 0)

    def _set_quiet(self, quiet: bool) -> None:
        self._quiet = quiet
        event = self._quiet_event
        if event is not None:
            if quiet:
                event.set()
            else:
                event.clear()

    async def _until_quiet(self) -> None:
        while not self._quiet:
            if self._quiet_event is None:
                self._quiet_event = asyncio.Event()  # not set: we are not quiet
            await self._quiet_event.wait()
        self._quiet_event = None

    # -- turns -----------------------------------------------------------------------------

    async def _turn(self, message: Message) -> Any:
        interleaving = self._interleaving
        key = message.idempotency_key
        if interleaving is None or key is None:
            return await self._turn_once(message, interleaving)
        # Two turns with one idempotency key never run at once: the second gets the
        # first's recorded outcome.
        await interleaving.hold_key(key)
        try:
            return await self._turn_once(message, interleaving)
        finally:
            interleaving.release_key(key)

    async def _turn_once(self, message: Message, interleaving: Interleaving | None) -> Any:
        if not message.tick:
            self.last_used = self.clock.monotonic()
        key = message.idempotency_key
        print_ = None
        if key is not None:
            print_ = fingerprint(message.method, message.args)
            seen = self.dedup.get(key)
            if seen is not None:
                if seen.fingerprint != print_:
                    raise IdempotencyKeyReused(
                        f"idempotency key {key!r} was already used for a different call "
                        f"on {self.actor_key}",
                        {"field": "Idempotency-Key"},
                    )
                return seen.outcome.unwrap()
        if message.inbox_id is not None and self._inbox_ids:
            self._inbox_ids.discard(message.inbox_id)
        if message.method == SEND_METHOD:
            async with self.commit_gate():
                await append_to_topic(self, message)
            return None
        handler = self.spec.handlers[message.method]
        invocation = key or unique_id()
        resumed = self._pending_steps.pop(invocation, None) if self._pending_steps else None
        ctx = self._context(invocation, resumed, message)
        try:
            base = self.seq
            outcome = await self._execute(ctx, handler, message)
            # Interleaved turns commit one at a time; a turn under which another one
            # committed runs again on the new state (its recorded steps reused) so that
            # the journal, replayed in order, gives exactly the state it leaves.
            while interleaving is not None:
                await interleaving.until_no_commit()
                if self.seq == base:
                    interleaving.begin_commit()
                    break
                base = self.seq
                ctx = self._context(invocation, ctx.steps, message, persisted=ctx.persisted)
                ctx.tolerant = True
                self.catalog.metrics["turn_reruns"] += 1
                outcome = await self._execute(ctx, handler, message)
        except BaseException:
            if ctx.persisted:
                self._keep_steps(invocation, ctx.steps[: ctx.persisted])
            if message.inbox_id is not None:
                self.inbox_ids.add(message.inbox_id)
            raise
        try:
            return await self._commit(message, ctx, outcome, print_, had_steps=bool(resumed))
        finally:
            if interleaving is not None:
                interleaving.end_commit()

    def _context(
        self,
        invocation: str,
        recorded: list[Step] | None,
        message: Message,
        *,
        persisted: int | None = None,
    ) -> InvocationContext:
        """A live context for a turn, on a fresh private copy of the committed state."""
        working = None
        if isinstance(self.instance, Actor):
            working = working_copy(self.instance._committed)
        ctx = InvocationContext(
            self,
            invocation,
            mode="live",
            recorded=recorded,
            working_state=working,
            chain=message.chain,
        )
        if persisted is not None:
            ctx.persisted = persisted
        if self._interleaving is not None:
            # Steps recorded by a turn that ran on older state: a reentrant handler may
            # take another path now, so a divergence drops them rather than failing.
            ctx.tolerant = True
        return ctx

    async def _execute(self, ctx: InvocationContext, handler: HandlerSpec, msg: Message) -> Outcome:
        token = current_invocation.set(ctx)
        try:
            kwargs = msg.kwargs if msg.kwargs is not None else handler.validate_args(msg.args)
            result = await getattr(self.instance, handler.name)(**kwargs)
            return Outcome(reply=dump_result(handler, result))
        except RETRYABLE:
            raise  # infrastructure, not the handler's verdict: nothing is recorded
        except BayouError as exc:
            return Outcome.failed(exc)
        except Exception as exc:
            return Outcome.failed(actor_error(exc))
        finally:
            current_invocation.reset(token)

    async def _commit(
        self,
        message: Message,
        ctx: InvocationContext,
        outcome: Outcome,
        print_: str | None,
        *,
        had_steps: bool,
    ) -> Any:
        assert self.fence is not None
        now = self.clock.time()
        seq = self.seq + 1
        kv_writes: dict[str, bytes | None] = {}
        appends: list[StreamAppend] = []
        outgoing: list[OutgoingTell] = []
        metas: dict[str, StreamMeta] = {}
        effects = ctx.effects
        if outcome.error is None:
            kv_writes = ctx.kv_writes()
            if effects:
                metas = await self._stream_metas_of(effects.stream_names())
                try:
                    writes, appends = effect_writes(effects, metas)
                except RuntimeError as exc:  # e.g. writing to a closed stream
                    outcome = Outcome.failed(actor_error(exc))
                    kv_writes, metas = {}, {}
                else:
                    kv_writes.update(writes)
                    outgoing = [
                        OutgoingTell(t, k, m, a, f"{self.actor_key}#{seq}.{i}")
                        for i, (t, k, m, a) in enumerate(effects.outbox)
                    ]
        ok = outcome.error is None
        record = InvocationRecord(
            method=message.method,
            args=message.args,
            steps=ctx.steps,
            outcome=outcome,
            committed_at=now,
            idempotency_key=message.idempotency_key,
            outbox=[tell.to_record() for tell in outgoing] if outgoing else [],
        )
        reminders = dict(effects.reminders) if ok and effects.reminders else {}
        fired = message.reminder
        if fired is not None and fired.name not in reminders:
            due = next_due(fired, now)
            reminders[fired.name] = None if due is None else replace(fired, due=due)
        commit = Commit(
            actor=self.actor_key,
            fence=self.fence,
            record=JournalRecord(seq, record.encode()),
            kv_writes=kv_writes,
            inbox_ack=message.inbox_id,
            clear_steps=ctx.invocation_id if (ctx.persisted or had_steps) else None,
            reminders=reminders,
            sends=bool(outgoing),
        )
        try:
            await self.catalog.committer.submit(commit)
        except StorageError:
            if ctx.persisted:
                self._keep_steps(ctx.invocation_id, ctx.steps[: ctx.persisted])
            if message.inbox_id is not None:
                self.inbox_ids.add(message.inbox_id)
            raise
        self.seq = seq
        if ok:
            if isinstance(self.instance, Actor) and ctx.working_state is not None:
                self.instance._committed = ctx.working_state
            if kv_writes:
                self.kv_cache.apply(kv_writes)
            if effects:
                self._published(effects, metas, appends, outgoing)
        if message.idempotency_key is not None and print_ is not None:
            self.dedup.add(message.idempotency_key, DedupEntry(self.seq, print_, outcome, now))
        return outcome.unwrap()

    def _keep_steps(self, invocation: str, steps: list[Step]) -> None:
        if self._pending_steps is None:
            self._pending_steps = {}
        self._pending_steps[invocation] = steps

    async def _stream_metas_of(self, names: set[str]) -> dict[str, StreamMeta]:
        """Copies of the named streams' metadata (read once, then kept per activation)."""
        if not names:
            return {}
        if self._stream_metas is None:
            self._stream_metas = {}
        known = self._stream_metas
        missing = [name for name in names if name not in known]
        if missing:
            keys = [stream_meta_key(name) for name in missing]
            stored = await self.catalog.storage.kv_get(self.actor_key, keys)
            for name, key in zip(missing, keys, strict=True):
                known[name] = StreamMeta.decode(stored.get(key))
        return {name: replace(known[name]) for name in names}

    def _published(
        self,
        effects: Effects,
        metas: dict[str, StreamMeta],
        appends: list[StreamAppend],
        outgoing: list[OutgoingTell],
    ) -> None:
        """After a commit: wake readers of what it wrote, and send its tells."""
        if metas:
            if self._stream_metas is None:
                self._stream_metas = {}
            self._stream_metas.update(metas)
        channels = self.catalog.channels
        for name in effects.events:
            channels.published_event(self.actor_key, name)
        for append in appends:
            channels.published_stream(self.actor_key, append)
        if outgoing:
            self.outbox.send(outgoing)

    async def persist_steps(self, ctx: InvocationContext) -> None:
        """Make the steps recorded so far durable before the handler goes past a side effect."""
        if isinstance(ctx, WorkflowContext):
            await ctx.workflow_run.segment()
            return
        assert self.fence is not None
        storage = self.catalog.storage
        try:
            for index in range(ctx.persisted, len(ctx.steps)):
                data = codec.pack(ctx.steps[index])
                await storage.step_put(self.actor_key, self.fence, ctx.invocation_id, index, data)
        except FencedWrite:
            self.catalog.metrics["fenced_writes"] += 1
            raise
        ctx.persisted = len(ctx.steps)

    # -- snapshots -------------------------------------------------------------------------

    def records_since_snapshot(self) -> int:
        return self.seq - self.snapshot_seq

    def _snapshot_due(self) -> bool:
        pending = self.records_since_snapshot()
        if pending >= self.catalog.settings.snapshot_every:
            return True
        age = self.clock.monotonic() - self.last_snapshot
        return pending > 0 and age >= self.catalog.settings.snapshot_interval

    async def snapshot(self) -> None:
        """Write the committed state and dedup window at ``seq``; trims the journal."""
        if self.seq == self.snapshot_seq or self.fence is None:
            return
        if self._outbox is not None and not self._outbox.idle():
            return
        now = self.clock.time()
        self.dedup.prune(now)
        state = None
        if isinstance(self.instance, Actor):
            state = self.instance._committed.model_dump(mode="json")
        seq = self.seq
        running = dict(self._run_steps or {})
        for run in (self._runs or {}).values():
            if run.ctx is not None:
                running[run.run_id] = run.ctx.steps[: run.ctx.persisted]
            else:
                running.setdefault(run.run_id, run.recorded)
        body = SnapshotBody(
            state, [], taken_at=now, workflows=running, dedup_packed=self.dedup.dump_packed()
        )
        try:
            # Through the committer: the snapshots due in one loop turn share a round trip.
            await self.catalog.committer.submit_snapshot(
                SnapshotPut(self.actor_key, self.fence, Snapshot(seq, body.encode()))
            )
        except FencedWrite:
            self.catalog.metrics["fenced_writes"] += 1
            raise
        self.snapshot_seq = seq
        self.last_snapshot = self.clock.monotonic()
        self.catalog.metrics["snapshots"] += 1

    # -- queries, tells, kv ----------------------------------------------------------------

    async def query(self, handler: HandlerSpec, kwargs: dict[str, Any]) -> Any:
        """Run a read-only handler now, against the committed state."""
        if self.status not in ("active", "deactivating"):
            raise Unavailable(f"{self.actor_key} is {self.status}")
        self._busy += 1
        self._set_quiet(False)
        ctx = InvocationContext(self, unique_id(), mode="query")
        token = current_invocation.set(ctx)
        try:
            result = await getattr(self.instance, handler.name)(**kwargs)
            return dump_result(handler, result)
        except BayouError:
            raise
        except Exception as exc:
            raise actor_error(exc) from None
        finally:
            current_invocation.reset(token)
            self._busy -= 1
            self.last_used = self.clock.monotonic()
            self._update_quiet()

    async def accept_tell(self, message: Message) -> None:
        """Store a one-way message in the inbox (durably) and queue it; idempotent by id."""
        if self.status != "active":
            raise Unavailable(f"{self.actor_key} is {self.status}")
        assert message.idempotency_key is not None and self.fence is not None
        message_id = message.idempotency_key
        seen = self.dedup.get(message_id)
        if seen is not None:
            if seen.fingerprint != fingerprint(message.method, message.args):
                raise IdempotencyKeyReused(
                    f"message id {message_id!r} was already used for a different message",
                    {"field": "Idempotency-Key"},
                )
            return
        inbox_ids = self.inbox_ids
        if message_id in inbox_ids:
            return
        inbox_ids.add(message_id)
        self._busy += 1
        self._set_quiet(False)
        try:
            body: dict[str, Any] = {"m": message.method, "a": message.args}
            if message.reminder is not None:
                fired = message.reminder
                body["r"] = [fired.name, fired.due, fired.period, fired.data]
            data = codec.pack(body)
            # Group-committed with the other tells (and turns) of this loop turn.
            put = InboxPut(self.actor_key, self.fence, InboxMessage(message_id, data))
            await self.catalog.committer.submit_inbox(put)
        except FencedWrite:  # counted by the committer
            self.lose_ownership()
            raise Unavailable(f"{self.actor_key} moved to another silo; retry") from None
        except BaseException:
            inbox_ids.discard(message_id)
            raise
        finally:
            self._busy -= 1
            self._update_quiet()
        message.inbox_id = message_id
        self._enqueue(message)

    def _queue_tell(self, stored: InboxMessage) -> None:
        body = codec.unpack(stored.data)
        self.inbox_ids.add(stored.id)
        fired = None
        if "r" in body:
            name, due, period, target = body["r"]
            fired = Reminder(self.actor_key, name, due, period, target)
        message = Message(
            body["m"], body["a"], idempotency_key=stored.id, inbox_id=stored.id, reminder=fired
        )
        self._enqueue(message)

    async def kv_read(self, keys: list[str]) -> dict[str, bytes]:
        """Committed kv values, from the cache or the store."""
        found, missing = self.kv_cache.lookup(keys)
        if missing:
            stored = await self.catalog.storage.kv_get(self.actor_key, missing)
            self.kv_cache.fill(missing, stored)
            found.update(stored)
        return found

    def silo_ref(self, ctx: InvocationContext, actor_type: Any, key: str) -> Any:
        return self.catalog.actor_ref(ctx, actor_type, key)

    # -- workflows -------------------------------------------------------------------------

    def _start_run(self, message: Message) -> None:
        """Start (or resume, replaying its steps) the workflow run of an inbox message."""
        run_id = message.idempotency_key or ""
        if run_id in self.runs:
            return
        if message.inbox_id is not None:
            self.inbox_ids.discard(message.inbox_id)
        run = WorkflowRun(self, message, self.run_steps.pop(run_id, []))
        if self._run_waiters:
            run.waiters.extend(self._run_waiters.pop(run_id, []))
        self.runs[run_id] = run
        self._set_quiet(False)
        run.start()

    def await_run(self, run_id: str, print_: str) -> asyncio.Future[Any]:
        """A future for the outcome of run ``run_id`` (already finished, running, or about
        to start from the inbox)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_consume)
        seen = self.dedup.get(run_id)
        if seen is not None:
            try:
                fut.set_result(seen.outcome.unwrap())
            except BaseException as exc:
                fut.set_exception(exc)
        elif run_id in self.runs:
            self.runs[run_id].waiters.append(fut)
        else:
            if self._run_waiters is None:
                self._run_waiters = {}
            self._run_waiters.setdefault(run_id, []).append(fut)
        return fut


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
