"""What a handler sees of the invocation it runs in: ``self.ctx``.

Everything a handler learns from outside its arguments goes through the context, so that
replaying the journal gives the handler exactly the values it saw the first time.
"""

from __future__ import annotations

import abc
import datetime as dt
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from bayou.model import ActorBase

T = TypeVar("T")


class KV(abc.ABC):
    """An entity's per-key store. Reads see this invocation's own writes; writes are
    committed atomically with the invocation's journal record, or not at all."""

    @abc.abstractmethod
    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""

    @abc.abstractmethod
    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those keys that exist."""

    @abc.abstractmethod
    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (msgpack-serializable) when the invocation commits."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` when the invocation commits."""


class Context(abc.ABC):
    """The running invocation: its identity, its recorded steps and its side channels."""

    #: The actor or entity instance the invocation runs on.
    target: ActorBase
    #: The private copy of the state an exclusive handler mutates; None in queries.
    working_state: BaseModel | None
    actor_type: str
    key: str
    #: Stable across retries of the same call when the caller gave an idempotency key.
    invocation_id: str
    #: True while the journal is being replayed: the handler's effects already happened once.
    #: Only for effects outside bayou that must not repeat and cannot use ``run`` (logging,
    #: test instrumentation); never branch business logic on it.
    replaying: bool

    @property
    @abc.abstractmethod
    def kv(self) -> KV:
        """The entity's K/V store (entities only)."""

    @abc.abstractmethod
    async def run(self, name: str, fn: Callable[[], Awaitable[T] | T]) -> T:
        """Run a side effect once: its result is persisted before the handler goes on, and
        a replay or a retry of this invocation returns the recorded result instead of
        calling ``fn`` again. The result must be msgpack-serializable."""

    @abc.abstractmethod
    def now(self) -> dt.datetime:
        """The current UTC time, recorded so that replay sees the same instant."""

    @abc.abstractmethod
    def random(self) -> random.Random:
        """A random generator whose seed is recorded, so replay draws the same numbers."""

    @abc.abstractmethod
    def ref(self, actor_type: Any, key: str) -> Any:
        """A reference to another actor, for calls made from this handler."""

    @abc.abstractmethod
    def set_event(self, name: str, value: Any) -> None:
        """Publish the latest value of event ``name``, committed with this invocation;
        clients read it with ``GET .../events/{name}`` (optionally waiting for it)."""

    @abc.abstractmethod
    def write_stream(self, name: str, item: Any) -> None:
        """Append ``item`` to stream ``name``, committed with this invocation; readers see
        items in order, each exactly once, while the stream grows."""

    @abc.abstractmethod
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
        """Register (or replace) the durable reminder ``name``, committed with this
        invocation: when due — ``due_in`` seconds from now, or at epoch ``due_at`` — the
        exclusive handler ``method(**args)`` runs as a turn, reactivating the actor if
        needed, then again every ``period`` seconds (at least 1) if periodic."""

    @abc.abstractmethod
    def cancel_reminder(self, name: str) -> None:
        """Remove reminder ``name`` when this invocation commits."""

    @abc.abstractmethod
    async def reminders(self) -> list[dict[str, Any]]:
        """This actor's reminders as committed: name, due, period, method, args."""

    async def sleep(self, seconds: float) -> None:
        """Workflows only: wait durably; a crash or hand-off does not restart the wait."""
        raise RuntimeError("ctx.sleep is for @workflow handlers")

    async def receive(self, topic: str, timeout: float | None = None) -> Any:
        """Workflows only: the oldest message sent to ``topic`` (waiting for one, durably,
        up to ``timeout`` seconds; None on timeout)."""
        raise RuntimeError("ctx.receive is for @workflow handlers")

    def continue_as_new(self, **args: Any) -> None:
        """Workflows only: end this run and start a fresh one with ``args`` and an empty
        history; the old run is archived with a link to the new one."""
        raise RuntimeError("ctx.continue_as_new is for @workflow handlers")

    @abc.abstractmethod
    def send(self, actor_type: Any, key: str, topic: str, value: Any) -> None:
        """Send ``value`` to ``topic`` of another actor (durably, after this invocation
        commits); a workflow there takes it with ``ctx.receive(topic)``."""

    @abc.abstractmethod
    def close_stream(self, name: str) -> None:
        """End stream ``name`` after this invocation's items; readers stop there."""
