"""Interleaved turns of a reentrant actor: which run at once, and the order they commit in.

A reentrant actor (``@actor(..., reentrancy=...)``, or a handler marked
``@always_interleave``) may start a turn while others wait at an await. Each turn still
works on its own copy of the committed state, and turns still commit one at a time: the
journal is a sequence, and replaying it in order must rebuild exactly the state the live
turns left. So a turn commits only if no other turn committed since it took its copy;
otherwise the activation runs it again on the newer state, reusing the results of its
side effects and calls as recorded (nothing outside the actor happens twice), and tries
again. The result is serializable reentrancy: no lost update, whatever the handlers do
between their awaits.

Only calls interleave; tells keep the mailbox's order (one at a time, in order per
sender), as do timer ticks and reminders.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bayou.runtime.activation import Activation, Message


class Interleaving:
    """The turns of one activation that run outside its mailbox loop, and its commit gate."""

    __slots__ = ("_activation", "_commit", "_keys", "_tasks")

    def __init__(self, activation: Activation) -> None:
        self._activation = activation
        self._tasks: set[asyncio.Task[None]] = set()
        self._commit: asyncio.Future[None] | None = None  # a commit in flight
        self._keys: dict[str, asyncio.Future[None]] = {}  # idempotency keys in flight

    def __len__(self) -> int:
        return len(self._tasks)

    # -- turns that start at once ----------------------------------------------------------

    def start(self, message: Message) -> asyncio.Future[Any]:
        """Start ``message``'s turn now, beside whatever else runs; its outcome's future."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        fut.add_done_callback(_consume)
        activation = self._activation
        activation.busy(+1)
        task = loop.create_task(self._run(message, fut))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fut

    async def _run(self, message: Message, fut: asyncio.Future[Any]) -> None:
        activation = self._activation
        try:
            await activation.run_message(message, fut, exclusive=False)
        finally:
            activation.busy(-1)
            activation.request_snapshot_if_due()

    def cancel_all(self) -> None:
        """Stop every interleaved turn (the activation is closing without them)."""
        me = asyncio.current_task()
        for task in list(self._tasks):
            if task is not me:
                task.cancel()

    # -- one commit at a time --------------------------------------------------------------

    async def until_no_commit(self) -> None:
        """Return once no commit of this activation is in flight."""
        while self._commit is not None:
            await asyncio.wait([self._commit])

    def begin_commit(self) -> None:
        """Mark a commit in flight; call right after ``until_no_commit``, with no await."""
        assert self._commit is None
        self._commit = asyncio.get_running_loop().create_future()

    def end_commit(self) -> None:
        commit, self._commit = self._commit, None
        if commit is not None and not commit.done():
            commit.set_result(None)

    @contextlib.asynccontextmanager
    async def committing(self) -> AsyncIterator[None]:
        """Hold the commit gate around a commit that does not depend on the state (a
        workflow's segment, a topic append)."""
        await self.until_no_commit()
        self.begin_commit()
        try:
            yield
        finally:
            self.end_commit()

    # -- idempotency keys ------------------------------------------------------------------

    async def hold_key(self, key: str) -> None:
        """Wait while another turn with ``key`` runs, then hold it."""
        while (running := self._keys.get(key)) is not None:
            await asyncio.wait([running])
        self._keys[key] = asyncio.get_running_loop().create_future()

    def release_key(self, key: str) -> None:
        held = self._keys.pop(key, None)
        if held is not None and not held.done():
            held.set_result(None)


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
