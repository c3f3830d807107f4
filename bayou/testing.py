"""Test your actors: an in-process silo on the memory store, and a clock you move by hand.

async with local_silo(App([Counter]), clock=FakeClock()) as silo:
    assert await silo.call("counter", "a", "add", {"n": 1}) == 1
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bayou.clock import Clock, FakeClock
from bayou.runtime.app import App
from bayou.runtime.silo import Silo
from bayou.storage.contract import Storage
from bayou.storage.memory import MemoryStorage

__all__ = ["FakeClock", "local_silo"]


@asynccontextmanager
async def local_silo(
    app: App,
    *,
    storage: Storage | None = None,
    clock: Clock | None = None,
    http: bool = False,
    stop: bool = True,
) -> AsyncIterator[Silo]:
    """A started silo; ``http=True`` also serves it on a free loopback port (``silo.address``).

    ``stop=False`` leaves it running on exit, like a process that was killed: pass the same
    ``storage`` to a new ``local_silo`` to see what survived.
    """
    silo = Silo(app, storage if storage is not None else MemoryStorage(), clock=clock, port=0)
    await silo.start(serve_http=http)
    try:
        yield silo
    finally:
        if stop:
            await silo.stop()
        else:
            await silo.abandon()
