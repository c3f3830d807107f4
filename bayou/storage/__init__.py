"""Durable storage behind one contract, with memory, sqlite and redis backends.

``RedisStorage`` loads on first use, so ``import bayou.storage`` does not import redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from bayou.storage.factory import open_storage
from bayou.storage.group_commit import GroupCommitter
from bayou.storage.memory import MemoryStorage
from bayou.storage.sqlite import SqliteStorage

if TYPE_CHECKING:
    from bayou.storage.redis import RedisStorage


def __getattr__(name: str) -> Any:
    if name == "RedisStorage":
        from bayou.storage.redis import RedisStorage

        globals()[name] = RedisStorage
        return RedisStorage
    raise AttributeError(f"module 'bayou.storage' has no attribute {name!r}")


__all__ = [
    "ActorKey",
    "ActorLoad",
    "Commit",
    "Fence",
    "GroupCommitter",
    "InboxMessage",
    "InboxPut",
    "JournalRecord",
    "MemoryStorage",
    "Ownership",
    "RedisStorage",
    "Reminder",
    "Snapshot",
    "SnapshotPut",
    "SqliteStorage",
    "Storage",
    "open_storage",
]
