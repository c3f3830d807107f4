"""Stopping the background tasks of a silo (heartbeat, reminder poll, idle collector)."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], *, again_after: float = 0.1) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again while it runs on.

    One ``cancel()`` does not stop a task that loops if code below it turns that
    CancelledError into an error of its own (Python 3.11's ``wait_for`` even returns a
    result that arrived in the same loop turn), which the loop survives: a plain
    ``await task`` then waits for ever. The caller's own cancellation is not suppressed;
    the stopped task's exception, if any, is retrieved and dropped."""
    if task is asyncio.current_task():
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=again_after)
    if not task.cancelled():
        task.exception()
