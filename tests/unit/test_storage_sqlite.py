"""SqliteStorage against the storage contract, plus what only a file can promise:
persistence, exclusive use, durability across SIGKILL, and a free event loop."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import bayou
from bayou.errors import StorageError
from bayou.storage import (
    ActorKey,
    Commit,
    Fence,
    InboxMessage,
    JournalRecord,
    Ownership,
    Reminder,
    Snapshot,
    SqliteStorage,
    Storage,
    sqlite_ops,
)
from tests.unit.storage_conformance import (
    A,
    StorageConformance,
    check_reminders_due_at_scale,
    fill_reminders,
    rec,
    take,
)


class TestSqlite(StorageConformance):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:
        store = SqliteStorage(tmp_path / "bayou.db")
        await store.open()
        yield store
        await store.close()


async def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dirs" / "bayou.db"
    store = SqliteStorage(path)
    await store.open()
    fence = await take(store)
    await store.commit([Commit(A, fence, rec(s), kv_writes={"x": b"%d" % s}) for s in (1, 2, 3)])
    await store.write_snapshot(A, fence, Snapshot(1, b"snap"))
    await store.inbox_put(A, fence, InboxMessage("m", b"msg"))
    await store.step_put(A, fence, "inv", 0, b"step")
    await store.reminder_set(fence, Reminder(A, "r", 12.5, 3.0, b"data"))
    await store.close()

    again = SqliteStorage(path)
    await again.open()
    try:
        assert await again.owner(0) == Ownership(0, "s1", 1)
        assert await again.read_journal(A) == [rec(2), rec(3)]
        assert await again.read_snapshot(A) == Snapshot(1, b"snap")
        assert await again.kv_get(A, ["x"]) == {"x": b"3"}
        assert await again.inbox_read(A) == [InboxMessage("m", b"msg")]
        assert await again.inbox_actors([0]) == [A]
        assert await again.steps_read(A, "inv") == [b"step"]
        assert await again.steps_pending(A) == {"inv": [b"step"]}
        assert await again.reminders_of(A) == [Reminder(A, "r", 12.5, 3.0, b"data")]
        assert await again.reminders_due([0], 12.5) == [Reminder(A, "r", 12.5, 3.0, b"data")]
    finally:
        await again.close()


async def test_schema_1_file_gains_reminders_and_outbox(tmp_path: Path) -> None:
    path = tmp_path / "bayou.db"
    store = SqliteStorage(path)
    await store.open()
    fence = await take(store)
    await store.commit([Commit(A, fence, rec(1))])

    def downgrade(conn: sqlite3.Connection) -> None:
        conn.execute("DROP TABLE reminders")
        conn.execute("DROP TABLE outbox")
        conn.execute("PRAGMA user_version = 1")

    await store._run(downgrade)
    await store.close()
    await store.open()
    try:
        assert await store.read_journal(A) == [rec(1)]
        await store.reminder_set(fence, Reminder(A, "r", 1.0, None, b""))
        assert await store.reminders_due([0], 1.0) == [Reminder(A, "r", 1.0, None, b"")]
        await store.commit([Commit(A, fence, rec(2), sends=True)])
        assert await store.outbox_actors([0]) == [A]
        version = await store._run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == sqlite_ops.SCHEMA_VERSION == 3
    finally:
        await store.close()


async def test_reminders_due_walks_the_index(tmp_path: Path) -> None:
    """The per-partition query is an index range in due order: no scan, no sort."""
    store = SqliteStorage(tmp_path / "bayou.db")
    await store.open()
    try:

        def plan(conn: sqlite3.Connection) -> str:
            query = f"EXPLAIN QUERY PLAN {sqlite_ops.DUE_RANGE}"
            rows = conn.execute(query, (0, 1.0, 10, 0)).fetchall()
            return " | ".join(str(row[-1]) for row in rows)

        detail = await store._run(plan)
        assert "USING COVERING INDEX reminders_by_due (partition=? AND due<?)" in detail, detail
        assert "TEMP B-TREE" not in detail, detail
    finally:
        await store.close()


async def test_reminders_due_at_scale(tmp_path: Path) -> None:
    """100,000 reminders over 1024 partitions; correctness asserted, times printed (-s)."""
    store = SqliteStorage(tmp_path / "bayou.db")
    await store.open()
    try:
        started = time.perf_counter()
        everything = await fill_reminders(store, 100_000)
        print(f"\nsqlite: 100,000 reminders written in {time.perf_counter() - started:.1f} s")
        await check_reminders_due_at_scale(store, everything)
        assert len(await store.reminders_due(range(1024), math.inf, 100_000)) == 100_000
    finally:
        await store.close()


async def test_second_store_on_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bayou.db"
    first = SqliteStorage(path)
    await first.open()
    second = SqliteStorage(path)
    with pytest.raises(StorageError, match=str(path)):
        await second.open()
    with pytest.raises(StorageError, match="not open"):
        await second.owner(0)
    await first.open()  # already open: a no-op, still usable
    assert await first.owner(0) == Ownership(0, None, 0)
    assert (tmp_path / "bayou.db.lock").read_text().strip() == str(os.getpid())
    await first.close()
    await second.open()  # the lock went with the first store
    await second.close()


async def test_use_before_open_is_refused(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "bayou.db")
    with pytest.raises(StorageError, match="not open"):
        await store.owner(0)


async def test_wal_full_sync_on_a_worker_thread(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "bayou.db")
    await store.open()
    try:

        def probe(conn: sqlite3.Connection) -> tuple[str, int, int]:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = conn.execute("PRAGMA synchronous").fetchone()[0]
            return mode, sync, threading.get_ident()

        mode, sync, worker = await store._run(probe)
        assert (mode, sync) == ("wal", 2)  # 2 = FULL
        assert worker != threading.get_ident()
        assert (await store._run(probe))[2] == worker
    finally:
        await store.close()


async def test_event_loop_runs_during_a_big_commit(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "bayou.db")
    await store.open()
    fence = await take(store)
    batch = [
        Commit(ActorKey("t", f"k{i}", 0), fence, rec(1, os.urandom(4096)), kv_writes={"v": b"x"})
        for i in range(1000)
    ]
    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    results = await store.commit(batch)
    during = ticks - before
    running = False
    await task
    await store.close()
    assert results == [None] * len(batch)
    assert during > 10, f"the event loop ticked only {during} times during the commit"


ROOT = Path(bayou.__file__).resolve().parent.parent

CHILD = """
import asyncio, sys
from bayou.storage import ActorKey, Commit, Fence, JournalRecord, SqliteStorage

async def main() -> None:
    store = SqliteStorage(sys.argv[1])
    await store.open()
    epoch = await store.claim(0, "child")
    fence = Fence(0, "child", epoch)
    seq = 0
    while True:
        seq += 1
        batch = [
            Commit(ActorKey("t", f"k{i}", 0), fence, JournalRecord(seq, b"%d" % seq),
                   kv_writes={"n": b"%d" % seq})
            for i in range(3)
        ]
        results = await store.commit(batch)
        assert results == [None] * 3, results
        print(seq, flush=True)

asyncio.run(main())
"""


async def test_committed_records_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "bayou.db"
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), stdout=asyncio.subprocess.PIPE, env=env
    )
    assert child.stdout is not None
    acknowledged = 0
    try:
        async with asyncio.timeout(15):
            while acknowledged < 40:
                line = await child.stdout.readline()
                assert line, "the child exited early"
                acknowledged = int(line)
    finally:
        child.kill()  # SIGKILL: no atexit, no close(), no checkpoint
        rest = await child.stdout.read()
        await child.wait()
    acknowledged = max([acknowledged, *map(int, rest.split())])

    store = SqliteStorage(path)
    await store.open()  # the dead child's lock went with it
    try:
        for i in range(3):
            actor = ActorKey("t", f"k{i}", 0)
            journal = await store.read_journal(actor)
            assert len(journal) >= acknowledged
            assert journal[:acknowledged] == [
                JournalRecord(s, b"%d" % s) for s in range(1, acknowledged + 1)
            ]
            [value] = (await store.kv_get(actor, ["n"])).values()
            assert int(value) == journal[-1].seq
        assert (await store.owner(0)).silo == "child"
        assert await store.claim(0, "parent", dead=["child"]) == 2
        assert await store.commit([Commit(A, Fence(0, "child", 1), rec(1))]) != [None]
    finally:
        await store.close()
