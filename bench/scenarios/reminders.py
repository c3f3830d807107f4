"""``reminders``: what a million registered reminders cost in Redis, and whether polling
for due ones costs the same with a million registered as with none.

On a redis-server of its own (AOF everysec, like the run's other one), in a cluster of its
own, the scenario takes ownership of every partition as a registrar would (``claim``; each
write is fenced with the epoch it got) and registers, one per actor, spread over all
partitions:

- ``reminders_due`` reminders due already, through ``Storage.reminder_set``;
- a sample of the far-future ones (30 days ahead, spread over a day, daily) through
  ``Storage.reminder_set`` as well, 64 calls in flight: the API's own rate;
- the rest of them with the very script ``reminder_set`` runs (``REMINDER_SET``, fenced,
  same keys and encodings), a thousand per pipeline, two pipelines in flight: a million
  one round trip at a time would take minutes. What the stored entries read back as
  through the storage API is checked afterwards.

At 0 registered and at each power of ten on the way, it times the poll a silo's reminder
service makes every ``reminder_interval`` (``Storage.reminders_due`` over all partitions,
``POLL_LIMIT``): once with none of them due (``until`` before the due ones) and once with
the due ones due: the wall time (what the silo waits) and Redis's own time per poll
(``INFO commandstats``), once Redis has finished any AOF rewrite the writes set off.
``INFO memory`` before and after the far-future ones gives Redis's bytes per reminder.

Then (if ``reminders_fire``) the registrar releases the partitions and a silo of that
cluster starts on the same Redis, with everything still registered: the overdue reminders
must fire on its first polls, and ``reminders_fire`` reminders set through the silo's API,
due two seconds later (spread over one second), must fire within about one poll interval.
``alarm.ring`` records when each one ran.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast
from urllib.parse import urlsplit

import hiredis

from bayou.runtime.reminders import POLL_LIMIT, ReminderTarget
from bayou.storage import redis_scripts as scripts
from bayou.storage.contract import ActorKey, Fence, Reminder
from bayou.storage.redis import RedisStorage, make_client
from bayou.storage.redis_keys import encode_reminder_value, reminder_member, score
from bayou.wire import partition_of
from bench.config import Mode
from bench.context import Bench
from bench.stats import percentile

CLUSTER = "bench-reminders"
REGISTRAR = "bench-registrar"  # the owner the partitions are claimed for while registering
PARTITIONS = 1024  # the silo's default, given to the silo started here explicitly
ACTOR = "alarm"
NAME = "expire"
DAY = 86_400.0
AHEAD = 30 * DAY  # how far in the future the bulk of the reminders are due
DATA = ReminderTarget("ring", {}).encode()
API_IN_FLIGHT = 64
API_SAMPLE = 10_000  # at most this many of the far-future ones go through reminder_set
BATCH = 1_000  # REMINDER_SET runs per pipeline
IN_FLIGHT = 2  # pipelines at once: Redis runs one while the next one is being built
POLLS = 20  # polls timed per figure (the median is reported)
CHECKED = 20  # bulk reminders read back through reminders_of


def run(bench: Bench) -> dict[str, Any]:
    import uvloop

    mode = bench.mode
    bench.need(mode.reminders / 15_000 + (15.0 if mode.reminders_fire else 5.0), "reminders")
    redis_child, url = bench.fresh_redis("redis-reminders")
    try:
        bench.progress.start(f"reminders: register {mode.reminders:,}, time the polls")
        result = uvloop.run(_register_and_poll(mode, url))
        bench.progress.advance()
        if mode.reminders_fire:
            bench.progress.start("reminders: a silo fires the due ones")
            result["fire"] = _fire(bench, url, mode)
            bench.progress.advance()
    finally:
        redis_child.stop()
    return result


def _actor(key: str) -> ActorKey:
    return ActorKey(ACTOR, key, partition_of(ACTOR, key, PARTITIONS))


def _checkpoints(total: int) -> list[int]:
    """Where the polls are timed on the way: every power of ten from 1,000, and the end."""
    marks = []
    mark = 1_000
    while mark < total:
        marks.append(mark)
        mark *= 10
    return [*marks, total]


async def _register_and_poll(mode: Mode, url: str) -> dict[str, Any]:
    client = make_client(url)
    storage = RedisStorage(url, CLUSTER, client=client)
    await storage.open()
    try:
        partitions = list(range(PARTITIONS))
        fences: dict[int, Fence] = {}
        for p in partitions:
            epoch = await storage.claim(p, REGISTRAR)
            if epoch is None:
                raise RuntimeError(f"partition {p} of a fresh cluster is owned already")
            fences[p] = Fence(p, REGISTRAR, epoch)
        empty = await _polls(storage, client, partitions, time.time(), 0)

        due_at = time.time()
        for i in range(mode.reminders_due):
            actor = _actor(f"due{i}")
            reminder = Reminder(actor, NAME, due_at, None, DATA)
            await storage.reminder_set(fences[actor.partition], reminder)
        far = time.time() + AHEAD

        async def polls(registered: int) -> dict[str, Any]:
            # Timed once Redis has finished rewriting its AOF after the writes: a rewrite
            # (a forked child) competes for this machine's two cores with the poll.
            await _settle(client)
            none_due = await _polls(storage, client, partitions, due_at - 1.0, 0)
            some_due = await _polls(storage, client, partitions, time.time(), mode.reminders_due)
            return {"registered": registered, "none_due": none_due, "due": some_due}

        rows = [await polls(0)]
        before = await _redis_memory(client)

        sample = min(API_SAMPLE, mode.reminders // 10)
        started = time.perf_counter()
        await _through_api(storage, fences, far, 0, sample)
        api_s = time.perf_counter() - started
        registered = sample
        rows.append(await polls(registered))
        bulk_s = 0.0
        for mark in _checkpoints(mode.reminders):
            if mark <= registered:
                continue
            started = time.perf_counter()
            await _pipelined(storage, url, fences, far, registered, mark)
            bulk_s += time.perf_counter() - started
            registered = mark
            rows.append(await polls(registered))
        await _settle(client)
        after = await _redis_memory(client)
        await _check(storage, partitions, far, mode.reminders, sample)
        for fence in fences.values():
            await storage.release(fence)
    finally:
        await storage.close()
        await client.aclose()

    bulk = mode.reminders - sample
    grown = after["used_memory"] - before["used_memory"]
    largest = rows[-1]
    return {
        "registered": mode.reminders,
        "due": mode.reminders_due,
        "partitions": PARTITIONS,
        "poll_limit": POLL_LIMIT,
        "api_registered": sample,
        "api_per_s": round(sample / api_s) if api_s > 0 else None,
        "pipelined_registered": bulk,
        "pipelined_per_s": round(bulk / bulk_s) if bulk_s > 0 else None,
        "register_s": round(api_s + bulk_s, 2),
        "redis_used_mb": round(after["used_memory"] / 2**20, 1),
        "bytes_per_reminder": round(grown / max(mode.reminders, 1)),
        "keys_per_reminder": round((after["keys"] - before["keys"]) / max(mode.reminders, 1), 3),
        "poll_empty": empty,
        "polls": rows,
        # The flatness check: the same poll (none due) at the most registered vs none at all,
        # as the silo waits for it and as Redis spends on it.
        "poll_growth": _ratio(largest["none_due"]["p50_ms"], empty["p50_ms"]),
        "poll_redis_growth": _ratio(largest["none_due"]["redis_ms"], empty["redis_ms"]),
    }


def _ratio(value: float, base: float) -> float | None:
    return round(value / base, 2) if base else None


async def _through_api(
    storage: RedisStorage, fences: dict[int, Fence], far: float, start: int, stop: int
) -> None:
    gate = asyncio.Semaphore(API_IN_FLIGHT)

    async def one(i: int) -> None:
        actor = _actor(f"a{i}")
        async with gate:
            await storage.reminder_set(fences[actor.partition], _far(actor, i, far))

    await asyncio.gather(*(one(i) for i in range(start, stop)))


def _far(actor: ActorKey, i: int, far: float) -> Reminder:
    return Reminder(actor, NAME, far + i % DAY, DAY, DATA)


async def _pipelined(
    storage: RedisStorage,
    url: str,
    fences: dict[int, Fence],
    far: float,
    start: int,
    stop: int,
) -> None:
    """Reminders ``a{start}`` .. ``a{stop - 1}``, each one ``REMINDER_SET`` run (the script
    ``reminder_set`` runs, with its keys and arguments), ``BATCH`` runs per pipeline."""
    batches = iter(range(start, stop, BATCH))
    keys = storage.keys
    sha = scripts.REMINDER_SET.sha

    async def worker() -> None:
        connection = await _Connection.open(url)
        try:
            for low in batches:
                commands: list[bytes] = []
                used: list[Fence] = []
                for i in range(low, min(low + BATCH, stop)):
                    actor = _actor(f"a{i}")
                    reminder = _far(actor, i, far)
                    p = actor.partition
                    fence = fences[p]
                    commands.append(
                        _pack(
                            *("EVALSHA", sha, 3),
                            *(keys.owner(p), keys.reminders(actor), keys.reminder_index(p)),
                            *(fence.silo, str(fence.epoch), NAME.encode()),
                            reminder_member(actor, NAME),
                            score(reminder.due),
                            encode_reminder_value(reminder.due, reminder.period, DATA),
                        )
                    )
                    used.append(fence)
                for reply, fence in zip(await connection.send(commands), used, strict=True):
                    if isinstance(reply, Exception):
                        raise RuntimeError(f"REMINDER_SET failed: {reply}")
                    scripts.check(reply, fence)
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def _pack(*parts: str | int | bytes) -> bytes:
    # hiredis's stub types its argument as a one-element tuple; any tuple is meant.
    packed: bytes = hiredis.pack_command(cast(Any, parts))
    return packed


class _Connection:
    """A plain connection to Redis for pipelines of packed commands. redis-py's pipeline
    spends more of the client's CPU per reply (a timeout around each read) than Redis
    spends running the script, which would make this a benchmark of redis-py."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()

    @classmethod
    async def open(cls, url: str) -> _Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 6379)
        connection = cls(reader, writer)
        db = int(parts.path.strip("/") or 0)
        if db:
            await connection.send([_pack("SELECT", db)])
        return connection

    async def send(self, commands: list[bytes]) -> list[Any]:
        """Every command's reply, in order (a ``ReplyError`` for an error reply)."""
        self._writer.write(b"".join(commands))
        await self._writer.drain()
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._parser.gets()
            if reply is False:
                data = await self._reader.read(1 << 16)
                if not data:
                    raise ConnectionError("redis closed the connection")
                self._parser.feed(data)
                continue
            replies.append(reply)
        return replies

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def _polls(
    storage: RedisStorage, client: Any, partitions: list[int], until: float, expect: int
) -> dict[str, Any]:
    """``POLLS`` timed polls of every partition for reminders due by ``until``: the wall
    time of each (what the silo waits), and Redis's own time per poll (``INFO
    commandstats``, every command the polls sent), which no client noise reaches."""
    times: list[float] = []
    found = 0
    await client.config_resetstat()
    for _ in range(POLLS):
        started = time.perf_counter()
        due = await storage.reminders_due(partitions, until, POLL_LIMIT)
        times.append(time.perf_counter() - started)
        found = len(due)
    stats = await client.info("commandstats")
    if found != min(expect, POLL_LIMIT):
        raise RuntimeError(f"a poll found {found} reminders due, not {expect}")
    times.sort()
    redis_us = sum(int(v["usec"]) for k, v in stats.items() if k != "cmdstat_config")
    return {
        "found": found,
        "p50_ms": round(percentile(times, 0.5) * 1000, 3),
        "max_ms": round(times[-1] * 1000, 3),
        "redis_ms": round(redis_us / POLLS / 1000, 3),
    }


async def _check(
    storage: RedisStorage, partitions: list[int], far: float, total: int, sample: int
) -> None:
    """The pipelined reminders read back through the storage API as ``reminder_set``'s
    would: a drift in the script's arguments fails the scenario instead of its figures."""
    step = max((total - sample) // CHECKED, 1)
    for i in range(sample, total, step):
        actor = _actor(f"a{i}")
        stored = await storage.reminders_of(actor)
        if stored != [_far(actor, i, far)]:
            raise RuntimeError(f"reminder of {actor} reads back as {stored}")
    due = await storage.reminders_due(partitions, far + DAY, POLL_LIMIT)
    if len(due) != min(POLL_LIMIT, total):
        raise RuntimeError(f"{len(due)} reminders due within {AHEAD + DAY:.0f} s, not {total}")


async def _settle(client: Any) -> None:
    """Until no AOF rewrite is running or scheduled (at most a minute)."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        persistence = await client.info("persistence")
        if not (persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]):
            return
        await asyncio.sleep(0.2)


async def _redis_memory(client: Any) -> dict[str, int]:
    """``used_memory`` and the number of keys. Taken settled (``_settle``): the buffer of
    the writes made during an AOF rewrite counts as used memory on Redis 6."""
    info = await client.info("memory")
    return {"used_memory": int(info["used_memory"]), "keys": int(await client.dbsize())}


def _fire(bench: Bench, url: str, mode: Mode) -> dict[str, Any]:
    import uvloop

    child, silo_url = bench.procs.silo(
        "silo-reminders", redis_url=url, cluster=CLUSTER, settings={"partitions": str(PARTITIONS)}
    )
    ready_at = time.time()
    try:
        return uvloop.run(_fire_and_wait(silo_url, ready_at, mode))
    finally:
        child.stop()


async def _fire_and_wait(url: str, ready_at: float, mode: Mode) -> dict[str, Any]:
    from bayou.client import Client
    from bench.app import Alarm

    async with Client(url, timeout=10.0) as client:
        overdue = [client.ref(Alarm, f"due{i}") for i in range(mode.reminders_due)]
        overdue_rings = await _rings(overdue, time.monotonic() + 20.0)
        fresh = [client.ref(Alarm, f"fire{i}") for i in range(mode.reminders_fire)]
        base = time.time() + 2.0
        dues = [base + i / max(len(fresh), 1) for i in range(len(fresh))]
        await asyncio.gather(
            *(
                ref.set_reminder(NAME, "ring", due_at=due)
                for ref, due in zip(fresh, dues, strict=True)
            )
        )
        fresh_rings = await _rings(fresh, time.monotonic() + 2.0 + 1.0 + 20.0)
    fired_overdue = [rings[0] for rings in overdue_rings if rings]
    lags = sorted(rings[0] - due for rings, due in zip(fresh_rings, dues, strict=True) if rings)
    return {
        "overdue": len(overdue),
        "overdue_fired": len(fired_overdue),
        "overdue_all_fired_after_ready_s": round(max(fired_overdue) - ready_at, 3)
        if fired_overdue
        else None,
        "set": len(fresh),
        "fired": len(lags),
        "lag_p50_s": round(percentile(lags, 0.5), 3) if lags else None,
        "lag_max_s": round(lags[-1], 3) if lags else None,
        "lag_min_s": round(lags[0], 3) if lags else None,
    }


async def _rings(refs: list[Any], deadline: float) -> list[list[float]]:
    """Each alarm's ring times, once every one has rung (or at ``deadline``)."""
    while True:
        rings: list[list[float]] = await asyncio.gather(*(ref.rings() for ref in refs))
        if all(rings) or time.monotonic() >= deadline:
            return rings
        await asyncio.sleep(0.1)
