"""Durable storage behind one contract, with memory, sqlite and (soon) redis backends."""

from bayou.storage.contract import (
    ActorKey,
    Commit,
    Fence,
    InboxMessage,
    JournalRecord,
    Ownership,
    Snapshot,
    Storage,
)
from bayou.storage.factory import open_storage
from bayou.storage.group_commit import GroupCommitter
from bayou.storage.memory import MemoryStorage
from bayou.storage.sqlite import SqliteStorage

__all__ = [
    "ActorKey",
    "Commit",
    "Fence",
    "GroupCommitter",
    "InboxMessage",
    "JournalRecord",
    "MemoryStorage",
    "Ownership",
    "Snapshot",
    "SqliteStorage",
    "Storage",
    "open_storage",
]
