"""Workflows: durable long-running invocations that sleep, wait for messages, and resume.

A ``@workflow`` handler starts from a durable message in the actor's inbox (its id is the
run id) and stays there until the run ends, so a crash or a hand-off only pauses it: the
next activation finds the message and resumes the run by replaying its steps. The run holds
the actor's turn only while its code runs; at ``ctx.sleep`` and ``ctx.receive`` (and while
it calls other actors) it lets the actor's other messages in.

Durability, segment by segment: every step the run takes is committed in a *segment record*
together with the events, stream items and tells it produced since the last one, so
progress is visible (and never repeated) before the run ends. A snapshot carries the steps
of running workflows, so trimming the journal never loses them. The run's end is an
ordinary invocation record (the caller's idempotency key is the run id), and its history is
archived in the actor's kv store, with its lineage when it continued as new.

Topics: ``POST .../topics/{topic}`` (or ``ctx.send`` from another actor) appends a message
to the actor's durable topic queue through its inbox; ``ctx.receive(topic)`` takes the
oldest, so a message may arrive before the workflow waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from bayou import codec
from bayou.errors import RETRYABLE, BayouError, FencedWrite, StorageError
from bayou.model import current_invocation
from bayou.runtime.effects import Effects
from bayou.runtime.handler_results import actor_error
from bayou.runtime.invocation import InvocationContext
from bayou.runtime.records import Outcome, Step
from bayou.runtime.reminders import WAKE_PREFIX, ReminderTarget, wake_name
from bayou.runtime.workflow_commits import (
    commit_segment,
    finish_run,
    topic_item_key,
    topic_meta_key,
)
from bayou.storage.contract import Reminder

if TYPE_CHECKING:
    from bayou.runtime.activation import Activation, Message

log = logging.getLogger("bayou.workflows")


class ContinueAsNew(BaseException):
    """Raised by ``ctx.continue_as_new``: ends this run and starts the next one."""

    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__("continue as new")
        self.new_args = args


class WorkflowContext(InvocationContext):
    """``self.ctx`` inside a workflow run: the invocation context plus durable waits."""

    workflow_run: WorkflowRun
    # Steps recorded before this resumption: effects emitted while replaying them were
    # committed with them, so they are not emitted again.
    replay_horizon = 0

    def _effects(self, what: str) -> Effects | None:
        if self.cursor < self.replay_horizon:
            return None
        return super()._effects(what)

    def _peek(self, kind: str, name: str) -> Step | None:
        """The recorded step at the cursor if it is ``kind``/``name`` (consumed), else None."""
        if self.cursor < len(self.steps):
            step = self.steps[self.cursor]
            if step[0] == kind and step[1] == name:
                self.cursor += 1
                return step
        return None

    async def sleep(self, seconds: float) -> None:
        step = self._next_recorded("sleep")
        if step is None:
            step = ["sleep", self.activation.clock.time() + max(seconds, 0.0)]
            self._record(step)
            self._wake_at(float(step[1]))
            await self.workflow_run.segment()
        until = float(step[1])
        await self.workflow_run.parked(until, self.workflow_run.sleep_until(until))

    def _wake_at(self, due: float, *, cancel: bool = False) -> None:
        """Register (with the step about to be committed) the reminder that reactivates
        the actor at ``due`` if it is passivated meanwhile; or cancel it."""
        name = wake_name(self.workflow_run.run_id, due)
        if cancel:
            self.effects.reminders[name] = None
            return
        data = ReminderTarget(WAKE_PREFIX, {}).encode()
        self.effects.reminders[name] = Reminder(self.activation.actor_key, name, due, None, data)

    async def receive(self, topic: str, timeout: float | None = None) -> Any:
        step = self._peek("recv", topic)
        if step is not None:
            return step[2]
        deadline_step = self._next_recorded("deadline", topic)
        if deadline_step is None:
            deadline = math.inf if timeout is None else self.activation.clock.time() + timeout
            deadline_step = ["deadline", topic, deadline]
            self._record(deadline_step)
            if math.isfinite(deadline):
                self._wake_at(deadline)
            await self.workflow_run.segment()
        deadline = float(deadline_step[2])
        while True:
            step = self._peek("recv", topic)
            if step is not None:
                return step[2]
            if self.cursor < len(self.steps):
                self._next_recorded("recv", topic)  # raises: the journal says otherwise
            taken = await self.workflow_run.take_from_topic(topic)
            if taken is not None:
                value, writes = taken
                self._record(["recv", topic, value, True])
                if math.isfinite(deadline):
                    self._wake_at(deadline, cancel=True)  # not needed any more
                await self.workflow_run.segment(extra_writes=writes)
                return value
            if self.activation.clock.time() >= deadline:
                self._record(["recv", topic, None, False])
                await self.workflow_run.segment()
                return None
            waiting = self.workflow_run.wait_for_topic(topic, deadline)
            await self.workflow_run.parked(deadline, waiting)

    def continue_as_new(self, **args: Any) -> None:
        raise ContinueAsNew(args)


class WorkflowRun:
    """One run of a workflow handler on one activation."""

    def __init__(self, activation: Activation, message: Message, recorded: list[Step]) -> None:
        self.activation = activation
        self.message = message
        self.run_id = message.idempotency_key or ""
        self.recorded = recorded
        self.ctx: WorkflowContext | None = None
        self.waiters: list[asyncio.Future[Any]] = []
        self.task: asyncio.Task[None] | None = None
        self._topic_wakeups: dict[str, asyncio.Event] = {}
        # While the run waits durably (asleep, or for a topic): until when (inf: no
        # deadline). Such a run may be passivated with its actor; None while its code runs.
        self.parked_until: float | None = None

    # -- the turn ------------------------------------------------------------------------

    async def outside_turn(self, waiting: Any) -> None:
        """Await ``waiting`` without holding the actor's turn: other messages run meanwhile."""
        lock = self.activation.turn_lock
        lock.release()
        try:
            await waiting
        finally:
            await lock.acquire()

    async def parked(self, until: float, waiting: Any) -> None:
        """``outside_turn`` for a durable wait: the actor may be passivated meanwhile
        (everything the run needs to resume is committed, with a wake reminder)."""
        self.parked_until = until
        try:
            await self.outside_turn(waiting)
        finally:
            self.parked_until = None

    def may_passivate(self, now: float, idle_timeout: float) -> bool:
        """Whether passivating the actor now loses nothing and is worth it: the run waits
        durably for at least ``idle_timeout`` more, and no caller awaits its result."""
        until = self.parked_until
        if until is None or until - now < idle_timeout:
            return False
        return all(fut.done() for fut in self.waiters)

    async def await_outside_turn(self, waiting: Any) -> Any:
        """``outside_turn`` for an awaitable whose result matters (a call to an actor)."""
        lock = self.activation.turn_lock
        lock.release()
        try:
            return await waiting
        finally:
            await lock.acquire()

    async def sleep_until(self, until: float) -> None:
        clock = self.activation.clock
        while (remaining := until - clock.time()) > 0:
            await clock.sleep(remaining)

    def topic_arrived(self, topic: str) -> None:
        event = self._topic_wakeups.get(topic)
        if event is not None:
            event.set()

    async def wait_for_topic(self, topic: str, deadline: float) -> None:
        event = self._topic_wakeups.setdefault(topic, asyncio.Event())
        event.clear()
        clock = self.activation.clock
        waiter = asyncio.ensure_future(event.wait())
        timer = None
        if math.isfinite(deadline):
            timer = asyncio.ensure_future(clock.sleep(max(deadline - clock.time(), 0.0)))
        pending = [waiter] if timer is None else [waiter, timer]
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pending:
                task.cancel()

    async def take_from_topic(self, topic: str) -> tuple[Any, dict[str, bytes | None]] | None:
        """The oldest committed message of ``topic`` and the writes that consume it."""
        meta_key = topic_meta_key(topic)
        stored = await self.activation.catalog.storage.kv_get(self.activation.actor_key, [meta_key])
        head, tail = codec.unpack(stored[meta_key]) if meta_key in stored else (0, 0)
        if head >= tail:
            return None
        item_key = topic_item_key(topic, head)
        found = await self.activation.catalog.storage.kv_get(self.activation.actor_key, [item_key])
        value = codec.unpack(found[item_key]) if item_key in found else None
        return value, {item_key: None, meta_key: codec.pack([head + 1, tail])}

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        activation = self.activation
        handler = activation.spec.handlers[self.message.method]
        lock = activation.turn_lock
        await lock.acquire()
        try:
            ctx = WorkflowContext(activation, self.run_id, mode="live", recorded=self.recorded)
            ctx.persisted = ctx.replay_horizon = len(self.recorded)
            ctx.workflow_run = self
            self.ctx = ctx
            token = current_invocation.set(ctx)
            continued: dict[str, Any] | None = None
            try:
                kwargs = handler.validate_args(self.message.args)
                result = await getattr(activation.instance, handler.name)(**kwargs)
                outcome = Outcome(reply=handler.dump_result(result))
            except ContinueAsNew as signal:
                continued = signal.new_args
                outcome = Outcome(reply={"continued_as": f"{self.run_id}+"})
            except RETRYABLE as exc:
                # Infrastructure failed under the run: it stays in the inbox and resumes on
                # the next activation; nothing is recorded as its outcome.
                log.warning(
                    "workflow %s paused by %s; it resumes on reactivation", self.run_id, exc
                )
                self._fail_waiters(exc)
                # Closing also wakes the actor soon: its start message, still in the inbox,
                # resumes the run (nothing else would, if no other message came for it).
                activation.close_after_storage_error(exc)
                return
            except BayouError as exc:
                outcome = Outcome.failed(exc)
            except Exception as exc:
                outcome = Outcome.failed(actor_error(exc))
            finally:
                current_invocation.reset(token)
            await finish_run(activation, self, outcome, continued)
        except asyncio.CancelledError:
            self._fail_waiters(StorageError("the workflow's activation closed; retry"))
            raise
        except FencedWrite:
            activation.lose_ownership()
        except StorageError as exc:
            self._fail_waiters(exc)
            activation.close_after_storage_error(exc)
        finally:
            if lock.locked():
                lock.release()
            activation.runs.pop(self.run_id, None)
            activation.update_quiet()

    def _fail_waiters(self, exc: BaseException) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_exception(exc)

    def finished(self, outcome: Outcome) -> None:
        for fut in self.waiters:
            if not fut.done():
                if outcome.error is None:
                    fut.set_result(outcome.reply)
                else:
                    try:
                        outcome.unwrap()
                    except BaseException as exc:
                        fut.set_exception(exc)

    async def segment(self, extra_writes: dict[str, bytes | None] | None = None) -> None:
        """Commit the steps and effects taken since the last segment, atomically."""
        ctx = self.ctx
        assert ctx is not None
        if ctx.persisted == len(ctx.steps) and not ctx.effects and not extra_writes:
            return
        effects, ctx.effects = ctx.effects, Effects()
        await commit_segment(
            self.activation, self, ctx.steps[ctx.persisted :], effects, extra_writes
        )
        ctx.persisted = len(ctx.steps)
