"""Group commit: many actors' commits made durable by one ``Storage.commit`` call.

Every commit submitted during one event-loop turn joins the same batch; while a batch is
being written, new submissions wait for the next one. With at most one flush in flight
the store sees one transaction (one fsync) per flush instead of one per invocation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bayou.errors import BayouError, FencedWrite, StorageError
from bayou.storage.contract import Commit, Storage

_Pending = tuple[Commit, asyncio.Future[None]]


class GroupCommitter:
    """Batches ``submit`` calls into ``storage.commit``; each submitter gets its own outcome.

    ``batches_flushed`` and ``commits_flushed`` count the batches handed to the store and
    the commits they held, whatever their outcome. The committer never closes ``storage``.
    """

    def __init__(self, storage: Storage, max_batch: int = 512) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.storage = storage
        self.max_batch = max_batch
        self.batches_flushed = 0
        self.commits_flushed = 0
        # Commits storage refused because their fence no longer held, counted here so that a
        # rejection is seen even when its submitter was cancelled meanwhile.
        self.fenced = 0
        self._pending: list[_Pending] = []
        self._flush_scheduled = False
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Commits submitted and not yet handed to the store."""
        return len(self._pending)

    async def submit(self, commit: Commit) -> None:
        """Make ``commit`` durable; raises its ``FencedWrite`` or ``StorageError`` if it failed.

        If the caller is cancelled the commit may still land: once queued it is not recalled.
        """
        if self._closed:
            raise StorageError("group committer is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((commit, future))
        self._schedule()
        await future

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
        asyncio.get_running_loop().call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        if self._flushing is not None or not self._pending:
            return
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        self._flushing = asyncio.get_running_loop().create_task(
            self._flush(batch), name="bayou-group-commit"
        )

    async def _flush(self, batch: Sequence[_Pending]) -> None:
        self.batches_flushed += 1
        self.commits_flushed += len(batch)
        try:
            outcomes = await self._write([commit for commit, _ in batch])
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, FencedWrite):
                    self.fenced += 1
                if future.done():  # the submitter was cancelled
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)
        except asyncio.CancelledError:
            # The loop is shutting down mid-write: the outcome is unknown to everyone.
            self._fail(batch, StorageError("group commit cancelled; outcome unknown"))
            raise
        finally:
            self._flushing = None
            self._schedule()

    async def _write(self, commits: list[Commit]) -> Sequence[BaseException | None]:
        """The store's per-commit outcomes; a failure of the whole call becomes each one's."""
        try:
            outcomes = await self.storage.commit(commits)
        except asyncio.CancelledError:
            raise
        except BayouError as exc:
            return [exc] * len(commits)
        except Exception as exc:
            error = StorageError(f"storage commit failed: {exc!r}")
            error.__cause__ = exc
            return [error] * len(commits)
        if len(outcomes) != len(commits):
            error = StorageError(
                f"storage returned {len(outcomes)} outcomes for {len(commits)} commits"
            )
            return [error] * len(commits)
        return outcomes

    @staticmethod
    def _fail(batch: Sequence[_Pending], error: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)
