"""The sqlite schema and every storage operation as a synchronous function of a connection.

Only ``SqliteStorage``'s worker thread calls these. Each write runs in its own
``BEGIN IMMEDIATE`` transaction, so its fence check and its writes are atomic together.

Reminders live in one table keyed by ``(partition, type, key, name)`` with an index on
``(partition, due, type, key, name)``: ``reminders_due`` reads short ranges of that index
per requested partition and merges them (``EarliestDue``), so it reads about ``limit``
entries plus a few per partition however many reminders are registered or due.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from bayou.errors import FencedWrite, StorageError
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
)
from bayou.storage.memory import EarliestDue, commit_reminder_error

T = TypeVar("T")

# 2: the reminders table; 3: the outbox table. A file of an older version gains them on
# open; an older bayou refuses a newer file rather than ignore what it cannot read.
SCHEMA_VERSION = 3

# Only ownership is WITHOUT ROWID: sqlite advises against it for tables whose rows carry
# large blobs (journal records, snapshots, kv values, steps and messages can be megabytes).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ownership (
    partition INTEGER PRIMARY KEY, silo TEXT, epoch INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    type TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (type, key, seq)
);
CREATE TABLE IF NOT EXISTS snapshot (
    type TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (type, key)
);
CREATE TABLE IF NOT EXISTS kv (
    type TEXT NOT NULL, key TEXT NOT NULL, k TEXT NOT NULL, v BLOB NOT NULL,
    PRIMARY KEY (type, key, k)
);
CREATE TABLE IF NOT EXISTS inbox (
    ord INTEGER PRIMARY KEY, type TEXT NOT NULL, key TEXT NOT NULL,
    partition INTEGER NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL,
    UNIQUE (type, key, id)
);
CREATE INDEX IF NOT EXISTS inbox_by_partition ON inbox (partition, type, key);
CREATE TABLE IF NOT EXISTS steps (
    type TEXT NOT NULL, key TEXT NOT NULL, inv TEXT NOT NULL, idx INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (type, key, inv, idx)
);
CREATE TABLE IF NOT EXISTS reminders (
    partition INTEGER NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL,
    due REAL NOT NULL, period REAL, data BLOB NOT NULL,
    PRIMARY KEY (partition, type, key, name)
);
CREATE INDEX IF NOT EXISTS reminders_by_due ON reminders (partition, due, type, key, name);
CREATE TABLE IF NOT EXISTS outbox (
    type TEXT NOT NULL, key TEXT NOT NULL, partition INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (type, key)
);
CREATE INDEX IF NOT EXISTS outbox_by_partition ON outbox (partition, type, key);
"""

# Bound parameters per IN (...) list, well under sqlite's historical limit of 999.
_CHUNK = 500


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL`` and the schema in place."""
    # isolation_level=None: no implicit transactions, we issue BEGIN/COMMIT ourselves.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"sqlite storage {path} cannot use WAL (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"sqlite storage {path} has schema {version}, newer than {SCHEMA_VERSION}"
            )
        with _transaction(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    """BEGIN … COMMIT, rolled back if the body or the COMMIT itself fails."""
    conn.execute(f"BEGIN {mode}")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


# -- fencing -------------------------------------------------------------------------------


def owner(conn: sqlite3.Connection, partition: int) -> Ownership:
    row = conn.execute(
        "SELECT silo, epoch FROM ownership WHERE partition = ?", (partition,)
    ).fetchone()
    return Ownership(partition, None, 0) if row is None else Ownership(partition, row[0], row[1])


def _fence_error(
    conn: sqlite3.Connection, actor: ActorKey | None, fence: Fence
) -> FencedWrite | None:
    """The FencedWrite to report for ``fence``, or None if it still holds."""
    if actor is not None and actor.partition != fence.partition:
        # A fence only proves ownership of its own partition.
        return FencedWrite(
            f"fence for partition {fence.partition} cannot write {actor} "
            f"of partition {actor.partition}"
        )
    held = owner(conn, fence.partition)
    if held.silo is not None and held.silo == fence.silo and held.epoch == fence.epoch:
        return None
    return FencedWrite(
        f"partition {fence.partition} is held by {held.silo}@{held.epoch}, "
        f"not {fence.silo}@{fence.epoch}",
        {"partition": fence.partition, "silo": held.silo, "epoch": held.epoch},
    )


def _check_fence(conn: sqlite3.Connection, actor: ActorKey, fence: Fence) -> None:
    error = _fence_error(conn, actor, fence)
    if error is not None:
        raise error


# -- ownership -----------------------------------------------------------------------------


def claim(conn: sqlite3.Connection, partition: int, silo: str, dead: Collection[str]) -> int | None:
    with _transaction(conn):
        held = owner(conn, partition)
        if held.silo == silo:
            return held.epoch
        if held.silo is not None and held.silo not in dead:
            return None
        conn.execute(
            "INSERT OR REPLACE INTO ownership (partition, silo, epoch) VALUES (?, ?, ?)",
            (partition, silo, held.epoch + 1),
        )
        return held.epoch + 1


def release(conn: sqlite3.Connection, fence: Fence) -> bool:
    with _transaction(conn):
        if _fence_error(conn, None, fence) is not None:
            return False
        conn.execute("UPDATE ownership SET silo = NULL WHERE partition = ?", (fence.partition,))
        return True


# -- journal -------------------------------------------------------------------------------


def commit(conn: sqlite3.Connection, batch: Sequence[Commit]) -> list[BaseException | None]:
    """One transaction (one fsync) for the batch; a savepoint per commit keeps each one
    all-or-nothing on its own, so a rejected commit is rolled back alone."""
    results: list[BaseException | None] = []
    with _transaction(conn):
        for one in batch:
            conn.execute("SAVEPOINT one_commit")
            result = _apply(conn, one)
            if result is not None:
                conn.execute("ROLLBACK TO one_commit")
            conn.execute("RELEASE one_commit")
            results.append(result)
    return results


def _apply(conn: sqlite3.Connection, commit: Commit) -> BaseException | None:
    """Write one commit inside the caller's savepoint; a non-None result means roll it back."""
    actor, seq = commit.actor, commit.record.seq
    malformed = commit_reminder_error(commit)
    if malformed is not None:
        return malformed
    fenced = _fence_error(conn, actor, commit.fence)
    if fenced is not None:
        return fenced
    duplicate = StorageError(f"{actor}: journal record {seq} already exists")
    snap = conn.execute(
        "SELECT seq FROM snapshot WHERE type = ? AND key = ?", (actor.type, actor.key)
    ).fetchone()
    if snap is not None and seq <= snap[0]:
        # A seq at or below the snapshot existed once and was trimmed: still a duplicate.
        return duplicate
    try:
        conn.execute(
            "INSERT INTO journal (type, key, seq, data) VALUES (?, ?, ?, ?)",
            (actor.type, actor.key, seq, commit.record.data),
        )
    except sqlite3.IntegrityError:
        return duplicate
    ident = (actor.type, actor.key)
    for k, v in commit.kv_writes.items():
        if v is None:
            conn.execute("DELETE FROM kv WHERE type = ? AND key = ? AND k = ?", (*ident, k))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO kv (type, key, k, v) VALUES (?, ?, ?, ?)", (*ident, k, v)
            )
    if commit.inbox_ack is not None:
        conn.execute(
            "DELETE FROM inbox WHERE type = ? AND key = ? AND id = ?", (*ident, commit.inbox_ack)
        )
    if commit.clear_steps is not None:
        conn.execute(
            "DELETE FROM steps WHERE type = ? AND key = ? AND inv = ?", (*ident, commit.clear_steps)
        )
    if commit.sends:
        conn.execute(
            "INSERT INTO outbox (type, key, partition, seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (type, key) DO UPDATE SET seq = max(seq, excluded.seq)",
            (*ident, actor.partition, seq),
        )
    for name, reminder in commit.reminders.items():
        if reminder is None:
            _delete_reminder(conn, actor, name)
        else:
            _put_reminder(conn, reminder)
    return None


def read_journal(conn: sqlite3.Connection, actor: ActorKey, after_seq: int) -> list[JournalRecord]:
    rows = conn.execute(
        "SELECT seq, data FROM journal WHERE type = ? AND key = ? AND seq > ? ORDER BY seq",
        (actor.type, actor.key, after_seq),
    )
    return [JournalRecord(seq, data) for seq, data in rows]


# -- snapshots -----------------------------------------------------------------------------


def write_snapshot(
    conn: sqlite3.Connection, actor: ActorKey, fence: Fence, snapshot: Snapshot
) -> None:
    with _transaction(conn):
        _check_fence(conn, actor, fence)
        _put_snapshot(conn, actor, snapshot)


def write_snapshots(
    conn: sqlite3.Connection, batch: Sequence[SnapshotPut]
) -> list[BaseException | None]:
    """One transaction (one fsync) for the batch; a fenced snapshot writes nothing."""
    return _each_fenced(conn, batch, lambda put: _put_snapshot(conn, put.actor, put.snapshot))


_Put = TypeVar("_Put", SnapshotPut, InboxPut)
_Written = TypeVar("_Written")


def _each_fenced(
    conn: sqlite3.Connection, batch: Sequence[_Put], write: Callable[[_Put], _Written]
) -> list[_Written | BaseException]:
    """``write(put)`` for each put whose fence holds, all in one transaction; a fenced
    put's result is its FencedWrite, and it writes nothing."""
    results: list[_Written | BaseException] = []
    with _transaction(conn):
        for put in batch:
            fenced = _fence_error(conn, put.actor, put.fence)
            results.append(write(put) if fenced is None else fenced)
    return results


def _put_snapshot(conn: sqlite3.Connection, actor: ActorKey, snapshot: Snapshot) -> None:
    """Store the snapshot unless a newer one is stored; trim what it covers."""
    stored = conn.execute(
        "SELECT seq FROM snapshot WHERE type = ? AND key = ?", (actor.type, actor.key)
    ).fetchone()
    if stored is not None and stored[0] > snapshot.seq:
        return
    conn.execute(
        "INSERT OR REPLACE INTO snapshot (type, key, seq, data) VALUES (?, ?, ?, ?)",
        (actor.type, actor.key, snapshot.seq, snapshot.data),
    )
    conn.execute(
        "DELETE FROM journal WHERE type = ? AND key = ? AND seq <= ?",
        (actor.type, actor.key, snapshot.seq),
    )
    conn.execute(
        "DELETE FROM outbox WHERE type = ? AND key = ? AND seq <= ?",
        (actor.type, actor.key, snapshot.seq),
    )


def read_snapshot(conn: sqlite3.Connection, actor: ActorKey) -> Snapshot | None:
    row = conn.execute(
        "SELECT seq, data FROM snapshot WHERE type = ? AND key = ?", (actor.type, actor.key)
    ).fetchone()
    return None if row is None else Snapshot(row[0], row[1])


# -- kv ------------------------------------------------------------------------------------


def kv_get(conn: sqlite3.Connection, actor: ActorKey, keys: Sequence[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with _transaction(conn, "DEFERRED"):
        for chunk in _chunks(list(dict.fromkeys(keys))):
            rows = conn.execute(
                f"SELECT k, v FROM kv WHERE type = ? AND key = ? AND k IN ({_marks(len(chunk))})",
                (actor.type, actor.key, *chunk),
            )
            found.update(rows)
    return found


# -- inbox ---------------------------------------------------------------------------------


def inbox_put(
    conn: sqlite3.Connection, actor: ActorKey, fence: Fence, message: InboxMessage
) -> bool:
    with _transaction(conn):
        _check_fence(conn, actor, fence)
        return _insert_inbox(conn, actor, message)


def inbox_put_many(
    conn: sqlite3.Connection, batch: Sequence[InboxPut]
) -> list[bool | BaseException]:
    """One transaction (one fsync) for the batch; a fenced put writes nothing."""
    return _each_fenced(conn, batch, lambda put: _insert_inbox(conn, put.actor, put.message))


def _insert_inbox(conn: sqlite3.Connection, actor: ActorKey, message: InboxMessage) -> bool:
    """Store ``message`` unless one with its id waits already; True if stored now."""
    cursor = conn.execute(
        "INSERT INTO inbox (type, key, partition, id, data) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (type, key, id) DO NOTHING",
        (actor.type, actor.key, actor.partition, message.id, message.data),
    )
    return cursor.rowcount == 1


def inbox_read(conn: sqlite3.Connection, actor: ActorKey) -> list[InboxMessage]:
    rows = conn.execute(
        "SELECT id, data FROM inbox WHERE type = ? AND key = ? ORDER BY ord",
        (actor.type, actor.key),
    )
    return [InboxMessage(msg_id, data) for msg_id, data in rows]


def inbox_actors(conn: sqlite3.Connection, partitions: Collection[int]) -> list[ActorKey]:
    """Ordered by (partition, type, key); chunked so any number of partitions works."""
    return _actors_listed(conn, "inbox", partitions)


def outbox_actors(conn: sqlite3.Connection, partitions: Collection[int]) -> list[ActorKey]:
    """Ordered by (partition, type, key); chunked so any number of partitions works."""
    return _actors_listed(conn, "outbox", partitions)


def _actors_listed(
    conn: sqlite3.Connection, table: str, partitions: Collection[int]
) -> list[ActorKey]:
    found: list[ActorKey] = []
    with _transaction(conn, "DEFERRED"):
        for chunk in _chunks(sorted(set(partitions))):
            rows = conn.execute(
                f"SELECT DISTINCT partition, type, key FROM {table} "
                f"WHERE partition IN ({_marks(len(chunk))}) ORDER BY partition, type, key",
                chunk,
            )
            found.extend(ActorKey(t, k, p) for p, t, k in rows)
    return found


# -- steps ---------------------------------------------------------------------------------


def step_put(
    conn: sqlite3.Connection,
    actor: ActorKey,
    fence: Fence,
    invocation: str,
    index: int,
    data: bytes,
) -> None:
    with _transaction(conn):
        _check_fence(conn, actor, fence)
        conn.execute(
            "INSERT OR REPLACE INTO steps (type, key, inv, idx, data) VALUES (?, ?, ?, ?, ?)",
            (actor.type, actor.key, invocation, index, data),
        )


def steps_read(conn: sqlite3.Connection, actor: ActorKey, invocation: str) -> list[bytes]:
    rows = conn.execute(
        "SELECT idx, data FROM steps WHERE type = ? AND key = ? AND inv = ? ORDER BY idx",
        (actor.type, actor.key, invocation),
    )
    return _contiguous(rows)


def steps_pending(conn: sqlite3.Connection, actor: ActorKey) -> dict[str, list[bytes]]:
    """``steps_read`` of every invocation with steps; one without step 0 is left out."""
    rows = conn.execute(
        "SELECT inv, idx, data FROM steps WHERE type = ? AND key = ? ORDER BY inv, idx",
        (actor.type, actor.key),
    )
    pending: dict[str, list[bytes]] = {}
    for inv, group in itertools.groupby(rows, key=lambda row: row[0]):
        steps = _contiguous((idx, data) for _, idx, data in group)
        if steps:
            pending[inv] = steps
    return pending


# -- activation ----------------------------------------------------------------------------


def load_actor(conn: sqlite3.Connection, actor: ActorKey) -> ActorLoad:
    """Snapshot, journal after it, pending steps and inbox, in one read transaction."""
    return load_actors(conn, [actor])[0]


def load_actors(conn: sqlite3.Connection, actors: list[ActorKey]) -> list[ActorLoad]:
    """``load_actor`` for many actors, in one read transaction."""
    loads = []
    with _transaction(conn, "DEFERRED"):
        for actor in actors:
            snapshot = read_snapshot(conn, actor)
            journal = read_journal(conn, actor, 0 if snapshot is None else snapshot.seq)
            steps, inbox = steps_pending(conn, actor), inbox_read(conn, actor)
            loads.append(ActorLoad(snapshot, journal, steps, inbox))
    return loads


# -- reminders -----------------------------------------------------------------------------


def _put_reminder(conn: sqlite3.Connection, reminder: Reminder) -> None:
    actor = reminder.actor
    conn.execute(
        "INSERT OR REPLACE INTO reminders (partition, type, key, name, due, period, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            actor.partition,
            actor.type,
            actor.key,
            reminder.name,
            float(reminder.due),
            None if reminder.period is None else float(reminder.period),
            bytes(reminder.data),
        ),
    )


def _delete_reminder(conn: sqlite3.Connection, actor: ActorKey, name: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM reminders WHERE partition = ? AND type = ? AND key = ? AND name = ?",
        (actor.partition, actor.type, actor.key, name),
    )
    return cursor.rowcount == 1


def reminder_set(conn: sqlite3.Connection, fence: Fence, reminder: Reminder) -> None:
    with _transaction(conn):
        _check_fence(conn, reminder.actor, fence)
        _put_reminder(conn, reminder)


def reminder_cancel(conn: sqlite3.Connection, fence: Fence, actor: ActorKey, name: str) -> bool:
    with _transaction(conn):
        _check_fence(conn, actor, fence)
        return _delete_reminder(conn, actor, name)


def reminders_of(conn: sqlite3.Connection, actor: ActorKey) -> list[Reminder]:
    rows = conn.execute(
        "SELECT name, due, period, data FROM reminders "
        "WHERE partition = ? AND type = ? AND key = ? ORDER BY name",
        (actor.partition, actor.type, actor.key),
    )
    return [Reminder(actor, name, due, period, data) for name, due, period, data in rows]


# One partition's due entries in index order, read from the index alone (it holds every
# column asked for): a range of reminders_by_due, no table lookups, no sort.
DUE_RANGE = (
    "SELECT due, type, key, name FROM reminders INDEXED BY reminders_by_due "
    "WHERE partition = ? AND due <= ? ORDER BY due, type, key, name LIMIT ? OFFSET ?"
)
_DUE_ROW = (
    "SELECT period, data FROM reminders WHERE partition = ? AND type = ? AND key = ? AND name = ?"
)


def reminders_due(
    conn: sqlite3.Connection, partitions: Collection[int], until: float, limit: int
) -> list[Reminder]:
    """Merge index ranges of each partition, then read the chosen rows: one read
    transaction, so every round sees the same state.

    The range query reads only the index (it holds every column it needs) and is one cached
    statement run again and again, which costs a few microseconds a partition.
    """
    merge: EarliestDue[tuple[str, str, str]] = EarliestDue(sorted(set(partitions)), limit)
    with _transaction(conn, "DEFERRED"):
        while wanted := merge.ranges():
            merge.add(
                [
                    [(due, (t, k, n)) for due, t, k, n in conn.execute(DUE_RANGE, (p, until, c, o))]
                    for p, o, c in wanted
                ]
            )
        found: list[Reminder] = []
        for due, partition, (type_name, key, name) in merge.earliest:
            period, data = conn.execute(_DUE_ROW, (partition, type_name, key, name)).fetchone()
            found.append(Reminder(ActorKey(type_name, key, partition), name, due, period, data))
    return found


def _contiguous(rows: Iterable[tuple[int, bytes]]) -> list[bytes]:
    """Steps from ``(index, data)`` rows sorted by index, from 0 up to the first gap."""
    steps: list[bytes] = []
    for idx, data in rows:
        if idx != len(steps):
            break  # a gap (or a negative index): nothing after it counts
        steps.append(data)
    return steps
