"""Durable replies and exactly-once, proven against SIGKILL of a real silo process.

Twenty clients send 2,000 ``add(1)`` calls, each with its own idempotency key, over 200
counters. The silo is SIGKILLed mid-load and restarted on the same data file. Clients
retry every call that failed with the same key until it is acknowledged. Afterwards each
counter must equal exactly the number of distinct keys sent to it: an acknowledged add
that was lost, or a retried add applied twice, both break the equality.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter as Tally
from pathlib import Path

from bayou import BayouError, Client
from samples.counter import Counter
from tests.cluster.harness import SiloProcess

CLIENTS = 20
CALLS = 2000
ACTORS = 200
DEADLINE = 120.0  # seconds for the whole load, kills and restarts included


async def run_client(
    url: str, ops: list[tuple[str, str]], acked: list[str], errors: Tally[str], stop_at: float
) -> None:
    async with Client(url, timeout=5.0, max_attempts=3) as client:
        for actor_key, idem in ops:
            ref = client.ref(Counter, actor_key).options(idempotency_key=idem)
            while time.monotonic() < stop_at:
                try:
                    await ref.add(1)
                except (BayouError, OSError) as exc:
                    errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.05)
                    continue
                acked.append(idem)
                break


async def test_sigkill_mid_load_loses_nothing_and_applies_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(7)
    silo = SiloProcess(tmp_path / "silo.db")
    await silo.start()
    ops = [(f"c{rng.randrange(ACTORS)}", f"op-{i}") for i in range(CALLS)]
    per_client = [ops[i::CLIENTS] for i in range(CLIENTS)]
    acked: list[str] = []
    errors: Tally[str] = Tally()
    stop_at = time.monotonic() + DEADLINE
    load = asyncio.gather(
        *(run_client(silo.url, chunk, acked, errors, stop_at) for chunk in per_client)
    )
    try:
        kills = 0
        for threshold in (CALLS // 3, 2 * CALLS // 3):
            while len(acked) < threshold and time.monotonic() < stop_at:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            await silo.kill()
            kills += 1
            await asyncio.sleep(0.2)  # clients see refused connections meanwhile
            await silo.start()
        await load
    finally:
        await silo.kill()
    assert kills == 2
    assert errors, "the kills should have failed some calls (else the test proves nothing)"
    assert sorted(acked) == sorted(idem for _, idem in ops), "every call acknowledged once"

    expected = Tally(actor_key for actor_key, _ in ops)
    await silo.start()
    try:
        async with Client(silo.url) as client:
            values = {key: await client.ref(Counter, key).get() for key in expected}
    finally:
        await silo.kill()
    assert values == dict(expected)
    assert sum(values.values()) == CALLS
