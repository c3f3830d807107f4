"""Stateless workers: up to N local activations of one type, no state, no journal.

A call to a stateless worker is never forwarded: the silo that receives it runs it on one
of its own activations of that type (created on demand, at most ``max_activations``), so
the work fans out over every silo a client talks to. Nothing is recorded: a handler may
run again if its caller retries.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from bayou.errors import BayouError
from bayou.model import ActorBase, ActorSpec, HandlerSpec, current_invocation
from bayou.runtime.handler_results import actor_error, dump_result
from bayou.runtime.invocation import InvocationContext

if TYPE_CHECKING:
    from bayou.runtime.catalog import Catalog


class _WorkerHost:
    """What a handler's context needs of an activation, for one worker instance."""

    def __init__(self, catalog: Catalog, spec: ActorSpec) -> None:
        self.catalog = catalog
        self.spec = spec
        self.clock = catalog.clock
        self.instance: ActorBase = spec.cls()
        self.key = ""
        self.actor_key = catalog.actor_key(spec.type_name, "")

    def silo_ref(self, ctx: InvocationContext, actor_type: Any, key: str) -> Any:
        return self.catalog.actor_ref(ctx, actor_type, key)


class WorkerPool:
    """The local activations of one stateless worker type, lent out one call at a time."""

    def __init__(self, catalog: Catalog, spec: ActorSpec) -> None:
        self._catalog = catalog
        self._spec = spec
        self._slots = asyncio.Semaphore(spec.max_local_activations)
        self._idle: list[_WorkerHost] = []
        self.activations = 0

    async def call(self, key: str, handler: HandlerSpec, kwargs: dict[str, Any]) -> Any:
        async with self._slots:
            host = self._idle.pop() if self._idle else self._new()
            host.key = host.instance.key = key
            ctx = InvocationContext(host, uuid.uuid4().hex, mode="query")  # type: ignore[arg-type]
            token = current_invocation.set(ctx)
            try:
                result = await getattr(host.instance, handler.name)(**kwargs)
                return dump_result(handler, result)
            except BayouError:
                raise
            except Exception as exc:
                raise actor_error(exc) from None
            finally:
                current_invocation.reset(token)
                self._idle.append(host)

    def _new(self) -> _WorkerHost:
        self.activations += 1
        return _WorkerHost(self._catalog, self._spec)
