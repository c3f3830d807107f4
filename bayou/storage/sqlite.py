"""The embedded default store: one sqlite file, durable across ``kill -9``.

The database runs in WAL mode with ``synchronous=FULL``, so a transaction whose COMMIT
returned is on disk. All sqlite calls happen on one dedicated worker thread that owns the
connection, so the event loop never blocks on I/O. A ``<path>.lock`` file held with
``flock`` keeps a second process (or a second store in this one) off the same file.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from bayou.errors import StorageError
from bayou.storage import sqlite_ops as ops
from bayou.storage.batching import TurnBatcher
from bayou.storage.contract import (
    ActorKey,
    ActorLoad,
    Commit,
    Fence,
    InboxMessage,
    InboxPut,
    JournalRecord,
    Ownership,
    Reminder,
    Snapshot,
    SnapshotPut,
    Storage,
)
from bayou.storage.memory import check_reminder, check_until

T = TypeVar("T")


class SqliteStorage(Storage):
    """A ``Storage`` in one sqlite file that only this store may use while it is open.

    ``open()`` creates the parent directories, takes the lock and creates the schema; it
    raises ``StorageError`` if another store holds the file.

    Reminders follow the shared rules in ``bayou.storage.memory`` (identity includes the
    partition, ValueError for a non-finite due or a period that is not above zero, ties
    by partition, type, key and name). Due times are 8-byte REALs: exact round trips.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = Path(f"{self.path}.lock")
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._loader: TurnBatcher[ActorKey, ActorLoad] = TurnBatcher(self._load_many, 256)

    def __repr__(self) -> str:
        return f"SqliteStorage({str(self.path)!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file; a no-op if this store is already open (as after a silo's abandon)."""
        if self._executor is not None:
            return
        # Set before the await so a concurrent open() is a no-op; calls made meanwhile
        # queue behind _open_sync on the single worker.
        executor = self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="bayou-sqlite"
        )
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._open_sync)
        except BaseException:
            self._executor = None
            executor.shutdown(wait=False)
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            # Operations already queued run first: the worker takes jobs in order.
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        finally:
            executor.shutdown(wait=False)

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open sqlite storage {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StorageError(
                f"sqlite storage {self.path} is in use by another store "
                f"(lock {self.lock_path} held by pid {holder})"
            ) from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._conn = ops.connect(self.path)
        except BaseException as exc:
            self._unlock()
            if isinstance(exc, sqlite3.Error | OSError):
                raise StorageError(f"cannot open sqlite storage {self.path}: {exc}") from exc
            raise

    def _close_sync(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        finally:
            self._conn = None
            self._unlock()

    def _unlock(self) -> None:
        # The lock file stays: deleting it would let two openers lock different inodes.
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the worker thread; sqlite failures surface as StorageError."""
        executor = self._executor
        if executor is None:
            raise StorageError(f"sqlite storage {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StorageError(f"sqlite storage {self.path} is not open")
        try:
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite storage {self.path} failed: {exc}") from exc

    # -- ownership -------------------------------------------------------------------------

    async def claim(self, partition: int, silo: str, dead: Collection[str] = ()) -> int | None:
        return await self._run(partial(ops.claim, partition=partition, silo=silo, dead=set(dead)))

    async def release(self, fence: Fence) -> bool:
        return await self._run(partial(ops.release, fence=fence))

    async def owner(self, partition: int) -> Ownership:
        return await self._run(partial(ops.owner, partition=partition))

    # -- journal ---------------------------------------------------------------------------

    async def commit(self, batch: Sequence[Commit]) -> list[BaseException | None]:
        if not batch:
            return []
        return await self._run(partial(ops.commit, batch=list(batch)))

    async def read_journal(self, actor: ActorKey, after_seq: int = 0) -> list[JournalRecord]:
        return await self._run(partial(ops.read_journal, actor=actor, after_seq=after_seq))

    # -- snapshots -------------------------------------------------------------------------

    async def write_snapshot(self, actor: ActorKey, fence: Fence, snapshot: Snapshot) -> None:
        await self._run(partial(ops.write_snapshot, actor=actor, fence=fence, snapshot=snapshot))

    async def write_snapshots(self, batch: Sequence[SnapshotPut]) -> list[BaseException | None]:
        """The batch in one transaction: one fsync for every snapshot of a loop turn."""
        if not batch:
            return []
        return await self._run(partial(ops.write_snapshots, batch=list(batch)))

    async def read_snapshot(self, actor: ActorKey) -> Snapshot | None:
        return await self._run(partial(ops.read_snapshot, actor=actor))

    # -- kv --------------------------------------------------------------------------------

    async def kv_get(self, actor: ActorKey, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        return await self._run(partial(ops.kv_get, actor=actor, keys=list(keys)))

    # -- inbox -----------------------------------------------------------------------------

    async def inbox_put(self, actor: ActorKey, fence: Fence, message: InboxMessage) -> bool:
        return await self._run(partial(ops.inbox_put, actor=actor, fence=fence, message=message))

    async def inbox_put_many(self, batch: Sequence[InboxPut]) -> list[bool | BaseException]:
        if not batch:
            return []
        return await self._run(partial(ops.inbox_put_many, batch=list(batch)))

    async def inbox_read(self, actor: ActorKey) -> list[InboxMessage]:
        return await self._run(partial(ops.inbox_read, actor=actor))

    async def inbox_actors(self, partitions: Collection[int]) -> list[ActorKey]:
        if not partitions:
            return []
        return await self._run(partial(ops.inbox_actors, partitions=list(partitions)))

    async def outbox_actors(self, partitions: Collection[int]) -> list[ActorKey]:
        if not partitions:
            return []
        return await self._run(partial(ops.outbox_actors, partitions=list(partitions)))

    # -- steps -----------------------------------------------------------------------------

    async def step_put(
        self, actor: ActorKey, fence: Fence, invocation: str, index: int, data: bytes
    ) -> None:
        await self._run(
            partial(
                ops.step_put,
                actor=actor,
                fence=fence,
                invocation=invocation,
                index=index,
                data=data,
            )
        )

    async def steps_read(self, actor: ActorKey, invocation: str) -> list[bytes]:
        return await self._run(partial(ops.steps_read, actor=actor, invocation=invocation))

    async def steps_pending(self, actor: ActorKey) -> dict[str, list[bytes]]:
        return await self._run(partial(ops.steps_pending, actor=actor))

    # -- activation ------------------------------------------------------------------------

    async def load_actor(self, actor: ActorKey) -> ActorLoad:
        """One read transaction; the loads asked for in one loop turn share one job on
        the worker thread (a burst of first calls pays one thread hop per batch)."""
        return await self._loader.submit(actor)

    async def _load_many(self, actors: list[ActorKey]) -> list[ActorLoad | BaseException]:
        return list(await self._run(partial(ops.load_actors, actors=actors)))

    # -- reminders -------------------------------------------------------------------------

    async def reminder_set(self, fence: Fence, reminder: Reminder) -> None:
        check_reminder(reminder)
        await self._run(partial(ops.reminder_set, fence=fence, reminder=reminder))

    async def reminder_cancel(self, fence: Fence, actor: ActorKey, name: str) -> bool:
        return await self._run(partial(ops.reminder_cancel, fence=fence, actor=actor, name=name))

    async def reminders_of(self, actor: ActorKey) -> list[Reminder]:
        return await self._run(partial(ops.reminders_of, actor=actor))

    async def reminders_due(
        self, partitions: Collection[int], until: float, limit: int = 1000
    ) -> list[Reminder]:
        check_until(until)
        if not partitions or limit <= 0:
            return []
        return await self._run(
            partial(ops.reminders_due, partitions=list(partitions), until=until, limit=limit)
        )
