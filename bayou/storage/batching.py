"""Requests made in one event-loop turn, answered together by one batch operation.

A burst of activations (a cold start, a failover's reactivations) asks storage for many
actors at once, each from its own task. Answering each with its own round trip (Redis) or
worker-thread job (sqlite) costs more than the reading itself; a ``TurnBatcher`` collects
the requests made until the loop turn ends and answers them with one call per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from bayou.errors import StorageError

K = TypeVar("K")
V = TypeVar("V")


class TurnBatcher(Generic[K, V]):
    """Collects ``submit`` calls of one loop turn and runs ``run_batch`` on them, in
    batches of at most ``max_batch``; each caller gets its own item's result or error."""

    def __init__(
        self,
        run_batch: Callable[[list[K]], Awaitable[Sequence[V | BaseException]]],
        max_batch: int,
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._pending: list[tuple[K, asyncio.Future[V]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: K) -> V:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[V] = loop.create_future()
        self._pending.append((item, fut))
        if len(self._pending) == 1:
            loop.call_soon(self._start)  # after every task already runnable this turn
        return await fut

    def _start(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self._max_batch):
            task = asyncio.ensure_future(self._answer(pending[start : start + self._max_batch]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            results = await self._run_batch([item for item, _ in batch])
            if len(results) != len(batch):
                raise StorageError(f"a batch of {len(batch)} got {len(results)} results")
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else StorageError("the batch was cancelled")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue  # its caller gave up
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
