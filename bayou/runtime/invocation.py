"""The context of one invocation: recorded steps, deterministic time and randomness, kv buffer.

The same class serves a first run, a retry that resumes from persisted steps, and a replay
from the journal: each step is taken from the recorded list while there is one, and is
produced (and recorded) live after that. In replay, running out of steps is a
``NonDeterminismError``: the handler no longer does what it did when it was journaled.
"""

from __future__ import annotations

import datetime as dt
import inspect
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from pydantic import BaseModel

from bayou import codec
from bayou.context import KV, Context
from bayou.errors import NonDeterminismError
from bayou.model import spec_of
from bayou.runtime.effects import RESERVED, Effects, check_channel_name
from bayou.runtime.records import Step
from bayou.runtime.reminders import MIN_PERIOD, ReminderTarget, visible
from bayou.storage.contract import Reminder

SEND_METHOD = "__send__"  # the built-in handler that appends to a topic queue (workflows)

if TYPE_CHECKING:
    from bayou.model import ActorBase
    from bayou.runtime.activation import Activation

T = TypeVar("T")
Mode = Literal["live", "replay", "query"]
_MISSING = object()


class InvocationContext(Context):
    """``self.ctx`` of a running handler."""

    def __init__(
        self,
        activation: Activation,
        invocation_id: str,
        *,
        mode: Mode,
        recorded: list[Step] | None = None,
        working_state: BaseModel | None = None,
        chain: tuple[str, ...] = (),
    ) -> None:
        self.activation = activation
        self.target: ActorBase = activation.instance
        self.actor_type = activation.spec.type_name
        self.key = activation.key
        self.invocation_id = invocation_id
        self.working_state = working_state
        self.mode: Mode = mode
        self.replaying = mode == "replay"
        self.steps: list[Step] = list(recorded) if recorded else []
        self.persisted = len(self.steps) if mode == "live" else 0
        self.cursor = 0
        self._random: random.Random | None = None
        self._kv: InvocationKV | None = None
        # Actors whose exclusive turns wait on this one, outermost first (deadlock detection).
        self.chain = chain
        self.effects = Effects()
        # Rerunning a turn of a reentrant actor on newer state: recorded steps are reused
        # while the handler asks for the same ones; where it takes another path, the rest
        # are dropped and it goes on live (``rerun`` counts how often that happened).
        self.tolerant = False
        self.rerun = 0

    # -- steps -----------------------------------------------------------------------------

    def _next_recorded(self, kind: str, name: str | None = None) -> Step | None:
        """The recorded step at the cursor, checked against what the handler asks for now."""
        if self.cursor < len(self.steps):
            step = self.steps[self.cursor]
            if (step[0] != kind or (name is not None and step[1] != name)) and self.tolerant:
                del self.steps[self.cursor :]
                self.persisted = min(self.persisted, self.cursor)
                self.rerun += 1
                return None
            if step[0] != kind or (name is not None and step[1] != name):
                raise NonDeterminismError(
                    f"{self.actor_type}/{self.key}: step {self.cursor} was recorded as "
                    f"{step[:2]!r} but the handler now asks for {[kind, name]!r}"
                )
            self.cursor += 1
            return step
        if self.mode == "replay":
            raise NonDeterminismError(
                f"{self.actor_type}/{self.key}: the handler asks for step {self.cursor} "
                f"({kind} {name or ''}) that the journal does not have"
            )
        return None

    def _record(self, step: Step) -> None:
        self.steps.append(step)
        self.cursor += 1

    async def run(self, name: str, fn: Callable[[], Awaitable[T] | T]) -> T:
        if self.mode == "query":
            raise RuntimeError("ctx.run is not allowed in a query handler")
        step = self._next_recorded("run", name)
        if step is not None:
            return cast(T, step[2])
        result = fn()
        if inspect.isawaitable(result):
            result = await result
        try:
            codec.pack(result)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"ctx.run({name!r}) returned a value that cannot be recorded: {exc}"
            ) from None
        self._record(["run", name, result])
        await self.activation.persist_steps(self)
        return cast(T, result)

    def now(self) -> dt.datetime:
        if self.mode == "query":
            return dt.datetime.fromtimestamp(self.activation.clock.time(), dt.UTC)
        step = self._next_recorded("now")
        if step is None:
            step = ["now", self.activation.clock.time()]
            self._record(step)
        return dt.datetime.fromtimestamp(float(step[1]), dt.UTC)

    def random(self) -> random.Random:
        if self._random is not None:
            return self._random
        if self.mode == "query":
            self._random = random.Random()
            return self._random
        step = self._next_recorded("seed")
        if step is None:
            step = ["seed", random.getrandbits(63)]
            self._record(step)
        self._random = random.Random(int(step[1]))
        return self._random

    # -- kv and refs -----------------------------------------------------------------------

    @property
    def kv(self) -> InvocationKV:
        if not self.activation.spec.is_entity:
            raise RuntimeError("ctx.kv belongs to entities; an Actor keeps its state in self.state")
        if self._kv is None:
            self._kv = InvocationKV(self.activation, writable=self.mode == "live")
        return self._kv

    def kv_writes(self) -> dict[str, bytes | None]:
        return dict(self._kv.writes) if self._kv is not None else {}

    def ref(self, actor_type: Any, key: str) -> Any:
        return self.activation.silo_ref(self, actor_type, key)

    def _effects(self, what: str) -> Effects | None:
        """Where this invocation's outgoing effects go; None while replaying (the journal
        record already holds them, and they were delivered when it was committed)."""
        if self.mode == "query":
            raise RuntimeError(f"{what} is not allowed in a query handler")
        return None if self.mode == "replay" else self.effects

    def set_event(self, name: str, value: Any) -> None:
        effects = self._effects("set_event")
        if effects is not None:
            effects.events[check_channel_name(name)] = _packed(value, f"event {name!r}")

    def write_stream(self, name: str, item: Any) -> None:
        effects = self._effects("write_stream")
        if effects is not None:
            name = check_channel_name(name)
            if name in effects.closed:
                raise RuntimeError(f"stream {name!r} was closed by this invocation")
            effects.streams.setdefault(name, []).append(_packed(item, f"stream item of {name!r}"))

    def close_stream(self, name: str) -> None:
        effects = self._effects("close_stream")
        if effects is not None:
            effects.closed.add(check_channel_name(name))

    def set_reminder(
        self,
        name: str,
        method: str,
        *,
        due_in: float | None = None,
        due_at: float | None = None,
        period: float | None = None,
        args: dict[str, Any] | None = None,
    ) -> None:
        name = check_channel_name(name)
        handler = self.activation.spec.handlers.get(method)
        if handler is None or handler.kind != "exclusive":
            raise ValueError(f"reminder {name!r}: {method!r} is not an exclusive handler")
        if (due_in is None) == (due_at is None):
            raise ValueError(f"reminder {name!r}: give exactly one of due_in and due_at")
        if period is not None and not period >= MIN_PERIOD:
            raise ValueError(f"reminder {name!r}: period must be at least {MIN_PERIOD} s")
        due = due_at if due_at is not None else self.now().timestamp() + max(due_in or 0.0, 0.0)
        effects = self._effects("set_reminder")
        if effects is not None:
            plain = handler.args_model.model_validate(args or {}).model_dump(mode="json")
            data = ReminderTarget(method, plain).encode()
            effects.reminders[name] = Reminder(self.activation.actor_key, name, due, period, data)

    def cancel_reminder(self, name: str) -> None:
        effects = self._effects("cancel_reminder")
        if effects is not None:
            effects.reminders[check_channel_name(name)] = None

    async def reminders(self) -> list[dict[str, Any]]:
        storage = self.activation.catalog.storage
        return visible(await storage.reminders_of(self.activation.actor_key))

    def send(self, actor_type: Any, key: str, topic: str, value: Any) -> None:
        type_name = actor_type if isinstance(actor_type, str) else spec_of(actor_type).type_name
        topic = check_channel_name(topic)
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        _packed(value, f"message to topic {topic!r}")
        self.tell(type_name, key, SEND_METHOD, {"topic": topic, "value": value})

    def tell(self, type_name: str, key: str, method: str, args: dict[str, Any]) -> None:
        """Queue a durable one-way message, sent only once this invocation commits."""
        effects = self._effects("tell")
        if effects is not None:
            effects.outbox.append([type_name, key, method, args])


def _packed(value: Any, what: str) -> bytes:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    try:
        return codec.pack(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} cannot be stored: {exc}") from None


class InvocationKV(KV):
    """The kv view of one invocation: its own buffered writes over the activation's cache."""

    def __init__(self, activation: Activation, *, writable: bool) -> None:
        self._activation = activation
        self._writable = writable
        self.writes: dict[str, bytes | None] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        values = await self.get_many([key])
        return values.get(key, default)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        for key in wanted:
            _check_user_key(key)
        found: dict[str, Any] = {}
        from_store = []
        for key in wanted:
            raw = self.writes.get(key, _MISSING)
            if raw is _MISSING:
                from_store.append(key)
            elif raw is not None:
                found[key] = codec.unpack(cast(bytes, raw))
        if from_store:
            stored = await self._activation.kv_read(from_store)
            for key, raw in stored.items():
                found[key] = codec.unpack(raw)
        return {key: found[key] for key in wanted if key in found}

    def set(self, key: str, value: Any) -> None:
        self._check_writable()
        _check_user_key(key)
        try:
            self.writes[key] = codec.pack(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"kv value for {key!r} cannot be stored: {exc}") from None

    def delete(self, key: str) -> None:
        self._check_writable()
        _check_user_key(key)
        self.writes[key] = None

    def _check_writable(self) -> None:
        if not self._writable:
            raise RuntimeError("kv writes are only allowed in exclusive handlers")


def _check_user_key(key: str) -> None:
    if not isinstance(key, str) or not key or key.startswith(RESERVED):
        raise ValueError(f"kv keys are non-empty strings not starting with \\x01, got {key!r}")
