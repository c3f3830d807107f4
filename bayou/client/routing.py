"""Smart routing: send each call straight to the silo that owns its actor.

The table comes from ``GET /v1/cluster`` on any silo: the partition count, the members,
and each partition's owner. Every silo stamps its answers with the ring version it routes
by; when that moves past the table's, the table is fetched again in the background. A
call sent by a stale table still lands (silos forward), so routing is only a speed-up and
never a correctness concern: any failure here falls back to the configured seed url.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from bayou import wire

log = logging.getLogger("bayou.client")

_FETCH_TIMEOUT = 2.0
_MIN_REFETCH = 0.1  # seconds between ring fetches asked for by failures


@dataclass(frozen=True, slots=True)
class RingTable:
    """One ring version: the owner's base url for every partition ("" = unknown)."""

    version: int
    partitions: int
    owners: tuple[str, ...]

    def url_for(self, type_name: str, key: str) -> str:
        return self.owners[wire.partition_of(type_name, key, self.partitions)]

    @classmethod
    def parse(cls, body: Any) -> RingTable:
        """Build from a ``/v1/cluster`` answer; ValueError if it is not one."""
        try:
            members = body["members"]
            addresses = [str(m["address"]) if m.get("status") == "active" else "" for m in members]
            owners = tuple(addresses[i] if i >= 0 else "" for i in body["owners"])
            table = cls(int(body["ring_version"]), int(body["partitions"]), owners)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"not a cluster description: {exc!r}") from None
        if len(table.owners) != table.partitions or table.partitions <= 0:
            raise ValueError("cluster description has an owner table of the wrong size")
        return table


class Router:
    """Keeps the ring table fresh and picks a base url per call."""

    def __init__(self, seeds: Sequence[str], enabled: bool = True) -> None:
        self.seeds = [seed.rstrip("/") for seed in seeds]
        self.enabled = enabled
        self.table: RingTable | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._first: asyncio.Task[None] | None = None
        self.refreshes = 0
        self._fetched_at = 0.0  # loop time of the last fetch that was started

    def url_for(self, type_name: str, key: str, *, fallback: int = 0) -> str:
        """The owner's url; or, for the ``fallback``-th retry after a failure, a seed (each
        retry the next one, so one dead seed cannot sink every retry)."""
        table = self.table
        if self.enabled and table is not None and not fallback:
            owner = table.url_for(type_name, key)
            if owner:
                return owner
        return self.seeds[max(fallback - 1, 0) % len(self.seeds)]

    async def ensure(self, session: aiohttp.ClientSession) -> None:
        """Fetch the table once before the first routed call (a failure is not fatal)."""
        if not self.enabled or self.table is not None:
            return
        if self._first is None:
            self._fetched_at = asyncio.get_running_loop().time()
            self._first = asyncio.ensure_future(self._fetch(session))
        await asyncio.wait([self._first])

    def saw_version(self, session: aiohttp.ClientSession, version: str | None) -> None:
        """A silo answered with this ring version: refresh in the background if newer."""
        if not self.enabled or version is None:
            return
        table = self.table
        try:
            newer = table is None or int(version) > table.version
        except ValueError:
            return
        if newer:
            self.stale(session, newer=True)

    def stale(self, session: aiohttp.ClientSession, *, newer: bool = False) -> None:
        """Something went wrong with a routed call: fetch the table again (single flight,
        and not again within ``_MIN_REFETCH`` of the last: while a crashed silo is not yet
        declared dead every call to it fails, and each fetch would bring the same ring);
        ``newer``: a silo said the ring changed, which is always worth a fetch."""
        if not self.enabled:
            return
        now = asyncio.get_running_loop().time()
        if self._refreshing is None or self._refreshing.done():
            if not newer and self.table is not None and now - self._fetched_at < _MIN_REFETCH:
                return
            self._fetched_at = now
            self._refreshing = asyncio.ensure_future(self._fetch(session))

    def poll(
        self, session: aiohttp.ClientSession, max_age: float, now: float | None = None
    ) -> None:
        """Refresh in the background if the last fetch began over ``max_age`` seconds ago:
        for answers that carry no ring version (the link's). ``now``: the loop's time, if
        the caller has it."""
        if not self.enabled:
            return
        if now is None:
            now = asyncio.get_running_loop().time()
        if now - self._fetched_at > max_age:
            self.stale(session)

    async def _fetch(self, session: aiohttp.ClientSession) -> None:
        candidates = list(self.seeds)
        if self.table is not None:
            candidates += [url for url in dict.fromkeys(self.table.owners) if url]
        for base in candidates:
            try:
                timeout = aiohttp.ClientTimeout(total=_FETCH_TIMEOUT)
                async with session.get(
                    base + wire.CLUSTER_ROUTE,
                    timeout=timeout,
                    headers={"Accept": wire.JSON},
                ) as response:
                    if response.status != 200:
                        continue
                    table = RingTable.parse(await response.json())
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.debug("ring table from %s failed: %r", base, exc)
                continue
            if self.table is None or table.version >= self.table.version:
                self.table = table
                self.refreshes += 1
            return

    async def close(self) -> None:
        for task in (self._refreshing, self._first):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task])
