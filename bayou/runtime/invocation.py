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
from bayou.runtime.records import Step

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
    ) -> None:
        self.activation = activation
        self.target: ActorBase = activation.instance
        self.actor_type = activation.spec.type_name
        self.key = activation.key
        self.invocation_id = invocation_id
        self.working_state = working_state
        self.mode: Mode = mode
        self.replaying = mode == "replay"
        self.steps: list[Step] = list(recorded or [])
        self.persisted = len(self.steps) if mode == "live" else 0
        self.cursor = 0
        self._random: random.Random | None = None
        self._kv: InvocationKV | None = None

    # -- steps -----------------------------------------------------------------------------

    def _next_recorded(self, kind: str, name: str | None = None) -> Step | None:
        """The recorded step at the cursor, checked against what the handler asks for now."""
        if self.cursor < len(self.steps):
            step = self.steps[self.cursor]
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
        try:
            self.writes[key] = codec.pack(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"kv value for {key!r} cannot be stored: {exc}") from None

    def delete(self, key: str) -> None:
        self._check_writable()
        self.writes[key] = None

    def _check_writable(self) -> None:
        if not self._writable:
            raise RuntimeError("kv writes are only allowed in exclusive handlers")
