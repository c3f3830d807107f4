"""Group commit: many actors' commits made durable by one ``Storage.commit`` call.

Every commit submitted during one event-loop turn joins the same batch, up to ``max_batch``
writes; while a batch is being written, new submissions wait for the next one. With at
most one flush in flight the store sees one transaction (one fsync) per flush instead of
one per invocation.
Accepted tells (inbox puts) are batched the same way, into one ``Storage.inbox_put_many``
per flush, and so are snapshots (``Storage.write_snapshots``), written alongside the
batch's commits: a busy silo snapshots each of its actors every ``snapshot_interval``,
thousands a minute, which one round trip each made a tenth of its load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from bayou.errors import BayouError, FencedWrite, StorageError
from bayou.storage.contract import Commit, InboxPut, SnapshotPut, Storage

_Item = Commit | InboxPut | SnapshotPut
_Pending = tuple[_Item, asyncio.Future[Any]]


class GroupCommitter:
    """Batches ``submit`` calls into ``storage.commit``; each submitter gets its own outcome.

    A batch holds at most ``max_batch`` writes, by default the store's ``commit_batch``.
    ``batches_flushed``, ``commits_flushed`` and ``inbox_flushed`` count the batches handed
    to the store and the commits and inbox puts they held, whatever their outcome. The
    committer never closes ``storage``.
    """

    def __init__(self, storage: Storage, max_batch: int | None = None) -> None:
        if max_batch is None:  # as many writes at once as the store asks for
            max_batch = storage.commit_batch
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.storage = storage
        self.max_batch = max_batch
        self.batches_flushed = 0
        self.commits_flushed = 0
        self.inbox_flushed = 0
        self.snapshots_flushed = 0
        # Commits storage refused because their fence no longer held, counted here so that a
        # rejection is seen even when its submitter was cancelled meanwhile.
        self.fenced = 0
        self._pending: list[_Pending] = []
        self._flush_scheduled = False
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False
        # The loop of the first submission (asking asyncio for it costs a getpid system call
        # on Python 3.11, and this is on every turn's path); a committer serves one loop.
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        """Commits submitted and not yet handed to the store."""
        return len(self._pending)

    async def submit(self, commit: Commit) -> None:
        """Make ``commit`` durable; raises its ``FencedWrite`` or ``StorageError`` if it failed.

        If the caller is cancelled the commit may still land: once queued it is not recalled.
        """
        await self._submit(commit)

    async def submit_inbox(self, put: InboxPut) -> bool:
        """Store ``put``'s message (as ``Storage.inbox_put``: True if stored now, False if it
        was waiting already); raises its ``FencedWrite`` or ``StorageError`` if it failed."""
        return bool(await self._submit(put))

    async def submit_snapshot(self, put: SnapshotPut) -> None:
        """Write ``put``'s snapshot (as ``Storage.write_snapshot``); raises its
        ``FencedWrite`` or ``StorageError`` if it failed."""
        await self._submit(put)

    async def _submit(self, item: _Item) -> Any:
        if self._closed:
            raise StorageError("group committer is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((item, future))
        if not self._flush_scheduled and self._flushing is None:
            self._flush_scheduled = True
            loop.call_soon(self._start_flush)
        return await future

    async def close(self) -> None:
        """Refuse new submissions and wait until everything submitted has been flushed."""
        self._closed = True
        while self._pending or self._flushing is not None or self._flush_scheduled:
            if self._flushing is not None:
                # wait() neither raises the task's exception nor cancels it if we are.
                await asyncio.wait({self._flushing})
            else:
                await asyncio.sleep(0)

    def _schedule(self) -> None:
        # call_soon, not a timer: the flush runs right after the submitters that are
        # already runnable this turn, so they all share it without adding latency.
        if self._flush_scheduled or self._flushing is not None or not self._pending:
            return
        self._flush_scheduled = True
        (self._loop or asyncio.get_running_loop()).call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        if self._flushing is not None or not self._pending:
            return
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        assert self._loop is not None
        self._flushing = self._loop.create_task(self._flush(batch), name="bayou-group-commit")

    async def _flush(self, batch: Sequence[_Pending]) -> None:
        self.batches_flushed += 1
        commits: list[tuple[Commit, asyncio.Future[Any]]] = []
        puts: list[tuple[InboxPut, asyncio.Future[Any]]] = []
        snapshots: list[tuple[SnapshotPut, asyncio.Future[Any]]] = []
        for item, future in batch:
            if isinstance(item, InboxPut):
                puts.append((item, future))
            elif isinstance(item, SnapshotPut):
                snapshots.append((item, future))
            else:
                commits.append((item, future))
        self.commits_flushed += len(commits)
        self.inbox_flushed += len(puts)
        self.snapshots_flushed += len(snapshots)
        writes: list[Awaitable[Sequence[Any]]] = []
        if commits:
            writes.append(self._write([c for c, _ in commits]))
        if puts:
            writes.append(self._put([p for p, _ in puts]))
        if snapshots:
            writes.append(self._snapshot([s for s, _ in snapshots]))
        try:
            if len(writes) == 1:
                outcomes = list(await writes[0])
            else:
                outcomes = [o for result in await asyncio.gather(*writes) for o in result]
            for (_, future), outcome in zip([*commits, *puts, *snapshots], outcomes, strict=True):
                if isinstance(outcome, FencedWrite):
                    self.fenced += 1
                if future.done():  # the submitter was cancelled
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        except asyncio.CancelledError:
            # The loop is shutting down mid-write: the outcome is unknown to everyone.
            self._fail(batch, StorageError("group commit cancelled; outcome unknown"))
            raise
        except Exception as exc:
            # A fault of ours, not the store's verdict: whatever landed is unknown, and no
            # submitter may be left waiting forever for an answer.
            error = StorageError(f"group commit failed: {exc!r}; outcome unknown")
            error.__cause__ = exc
            self._fail(batch, error)
        finally:
            self._flushing = None
            self._schedule()

    async def _write(self, commits: list[Commit]) -> Sequence[BaseException | None]:
        return await _outcomes(self.storage.commit, commits, "commit", "commits")

    async def _snapshot(self, puts: list[SnapshotPut]) -> Sequence[BaseException | None]:
        return await _outcomes(self.storage.write_snapshots, puts, "snapshot write", "snapshots")

    async def _put(self, puts: list[InboxPut]) -> Sequence[BaseException | bool]:
        return await _outcomes(self.storage.inbox_put_many, puts, "inbox put", "puts")

    @staticmethod
    def _fail(batch: Sequence[_Pending], error: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)


_T = TypeVar("_T")
_R = TypeVar("_R")


async def _outcomes(
    write: Callable[[list[_T]], Awaitable[Sequence[_R]]], items: list[_T], what: str, plural: str
) -> Sequence[_R | BaseException]:
    """The store's per-item outcomes of one batch call; a failure of the whole call becomes
    each one's."""
    try:
        outcomes = await write(items)
    except asyncio.CancelledError:
        raise
    except BayouError as exc:
        return [exc] * len(items)
    except Exception as exc:
        error = StorageError(f"storage {what} failed: {exc!r}")
        error.__cause__ = exc
        return [error] * len(items)
    if len(outcomes) != len(items):
        error = StorageError(f"storage returned {len(outcomes)} outcomes for {len(items)} {plural}")
        return [error] * len(items)
    return outcomes
