"""Events and streams as seen by readers: the latest value, or items from an offset on.

Readers wait on the silo that owns the actor, without holding anything but a future: a
commit that writes an event or stream items publishes them here, which wakes every reader
waiting for them at once (a token written by an LLM-streaming actor reaches its reader
within a loop turn of being durable). A stream reader woken by the very items it waits
for takes them from the published append, durable already, without going back to
storage; every other read goes to storage, so reads work for actors that are not active,
and after any crash.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from bayou import codec
from bayou.runtime.effects import (
    StreamAppend,
    StreamMeta,
    event_key,
    stream_item_key,
    stream_meta_key,
)
from bayou.storage.contract import ActorKey, Storage

MAX_READ = 1000  # stream items returned by one read


class Channels:
    """Waiting readers of events and streams on this silo."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        # A waiter's future resolves with what woke it: the stream's append, or None.
        self._waiters: defaultdict[tuple[str, str, str], set[_Waiter]] = defaultdict(set)

    def _wake(self, kind: str, actor: ActorKey, name: str, what: StreamAppend | None) -> None:
        for fut in self._waiters.pop((kind, str(actor), name), ()):
            if not fut.done():
                fut.set_result(what)

    def published_event(self, actor: ActorKey, name: str) -> None:
        self._wake("ev", actor, name, None)

    def published_stream(self, actor: ActorKey, append: StreamAppend) -> None:
        """``append`` was committed: wake its readers with it."""
        self._wake("st", actor, append.name, append)

    def _waiter(self, kind: str, actor: ActorKey, name: str) -> _Waiter:
        fut: _Waiter = asyncio.get_running_loop().create_future()
        self._waiters[(kind, str(actor), name)].add(fut)
        return fut

    def _drop(self, kind: str, actor: ActorKey, name: str, fut: _Waiter) -> None:
        waiting = self._waiters.get((kind, str(actor), name))
        if waiting is not None:
            waiting.discard(fut)
            if not waiting:
                del self._waiters[(kind, str(actor), name)]

    async def _wait(self, fut: _Waiter, deadline: float) -> bool:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(fut, remaining)
        except TimeoutError:
            return False
        return True

    async def get_event(self, actor: ActorKey, name: str, wait: float) -> tuple[bool, Any]:
        """``(True, value)`` for the latest value, waiting up to ``wait`` s for a first one."""
        deadline = asyncio.get_running_loop().time() + wait
        key = event_key(name)
        while True:
            # Wait first, read second: a value committed between the two still wakes us.
            fut = self._waiter("ev", actor, name)
            try:
                stored = await self._storage.kv_get(actor, [key])
                if key in stored:
                    return True, codec.unpack(stored[key])
                if not await self._wait(fut, deadline):
                    return False, None
            finally:
                self._drop("ev", actor, name, fut)

    async def read_stream(
        self, actor: ActorKey, name: str, after: int, limit: int, wait: float
    ) -> dict[str, Any]:
        """Items with offsets above ``after`` (at most ``limit``), waiting up to ``wait`` s
        for the first; ``closed`` once the stream has ended and every item was returned."""
        deadline = asyncio.get_running_loop().time() + wait
        limit = max(1, min(limit, MAX_READ))
        meta_key = stream_meta_key(name)
        while True:
            fut = self._waiter("st", actor, name)
            try:
                stored = await self._storage.kv_get(actor, [meta_key])
                meta = StreamMeta.decode(stored.get(meta_key))
                last = min(meta.next_offset - 1, after + limit)
                if last > after:
                    keys = [stream_item_key(name, offset) for offset in range(after + 1, last + 1)]
                    found = await self._storage.kv_get(actor, keys)
                    items = [
                        [offset, codec.unpack(found[key])]
                        for offset, key in zip(range(after + 1, last + 1), keys, strict=True)
                        if key in found
                    ]
                    done = meta.closed and last == meta.next_offset - 1
                    return {"items": items, "closed": done, "next": last + 1}
                if meta.closed or not await self._wait(fut, deadline):
                    return {"items": [], "closed": meta.closed, "next": max(after + 1, 0)}
                follows = _following(fut.result(), after, limit)
                if follows is not None:
                    return follows
            finally:
                self._drop("st", actor, name, fut)


_Waiter = asyncio.Future["StreamAppend | None"]


def _following(append: StreamAppend | None, after: int, limit: int) -> dict[str, Any] | None:
    """A read's answer straight from the append that woke it, if that append starts right
    after ``after`` (else None: what lies between is read from storage)."""
    if append is None or append.first_offset != after + 1:
        return None
    taken = append.items[:limit]
    offsets = range(after + 1, after + 1 + len(taken))
    items = [[offset, codec.unpack(item)] for offset, item in zip(offsets, taken, strict=True)]
    done = append.closed and len(taken) == len(append.items)
    return {"items": items, "closed": done, "next": after + 1 + len(taken)}
