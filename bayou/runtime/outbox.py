"""Tells an actor sends from its handlers, delivered after their invocation commits.

Each tell carries a message id derived from the sending record (``<actor>#<seq>.<index>``),
so delivering it again — after a crash, when the journal is replayed — is recognised by
the receiver and applied once. Deliveries of one actor go out one at a time, in order, so
a receiver sees one sender's tells in the order they were sent. A record is snapshotted
away only after its tells were delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bayou.errors import RequestError

if TYPE_CHECKING:
    from bayou.runtime.activation import Activation

log = logging.getLogger("bayou.outbox")


@dataclass(frozen=True, slots=True)
class OutgoingTell:
    type_name: str
    key: str
    method: str
    args: dict[str, Any]
    message_id: str

    def to_record(self) -> list[Any]:
        return [self.type_name, self.key, self.method, self.args, self.message_id]

    @classmethod
    def from_record(cls, row: list[Any]) -> OutgoingTell:
        type_name, key, method, args, message_id = row
        return cls(type_name, key, method, args, message_id)


class Outbox:
    """The deliveries of one activation, retried until the receiver has stored them."""

    def __init__(self, activation: Activation) -> None:
        self._activation = activation
        self._pending: deque[OutgoingTell] = deque()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.delivered = 0

    def idle(self) -> bool:
        return not self._pending

    def send(self, tells: list[OutgoingTell]) -> None:
        if not tells:
            return
        self._pending.extend(tells)
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._deliver())

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _deliver(self) -> None:
        silo = self._activation.catalog.silo
        pause = 0.05
        while self._pending:
            tell = self._pending[0]
            try:
                await silo.tell(
                    tell.type_name, tell.key, tell.method, tell.args, message_id=tell.message_id
                )
            except RequestError as exc:
                # The receiver will never take it (unknown type, bad arguments): retrying
                # cannot help, and holding it would block every later tell.
                log.error(
                    "dropping tell %s to %s/%s.%s: %s",
                    tell.message_id,
                    tell.type_name,
                    tell.key,
                    tell.method,
                    exc,
                )
            except Exception as exc:
                log.warning("tell %s not delivered yet (%s); retrying", tell.message_id, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            self._pending.popleft()
            self.delivered += 1
            pause = 0.05
        self._idle.set()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
