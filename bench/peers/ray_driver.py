"""The Ray side of the ``call`` workload, run by the Ray virtualenv's interpreter:
``python bench/peers/ray_driver.py '<json spec>'``; one JSON result on stdout.

Ray actors are not durable; this measures what a plain in-memory actor call costs. The
layout: a pool of ``actors`` actors (each an OS process, as every Ray actor is), each
holding a dict of counters; a key is hashed (crc32) onto one of them and ``add(key, n)``
updates its counter and returns it. One Ray actor per key would be 10,000 worker
processes on a 2-core machine, which is not how anyone would run Ray; a few actors per
core keeps every core busy without making the OS scheduler the bottleneck. The calls are
made from this driver, Ray's own client: the driver is the load generator.

Two ways to drive each concurrency, both measured, the faster one reported as Ray's figure:

- ``asyncio``: ``concurrency`` coroutines each awaiting its ``ObjectRef``, the closed loop
  of bayou's load generator (``bench.loadgen._timed``, reused as is);
- ``blocking``: at 1, ``ray.get(actor.add.remote(...))`` in a loop; above 1,
  ``concurrency`` calls kept in flight with ``ray.wait``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ray  # noqa: E402

from bench.loadgen import LoadSpec, _timed  # noqa: E402
from bench.peers import cpu  # noqa: E402
from bench.stats import summarize  # noqa: E402


@ray.remote
class Shard:
    """Counters of the keys hashed onto this actor."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def add(self, key: str, n: int) -> int:
        value = self.counters.get(key, 0) + n
        self.counters[key] = value
        return value


def log(text: str) -> None:
    print(f"ray driver: {text}", file=sys.stderr, flush=True)


class Pool:
    def __init__(self, size: int) -> None:
        self.actors = [Shard.remote() for _ in range(size)]  # type: ignore[attr-defined]
        self.size = size

    def add(self, key: str, n: int = 1) -> Any:
        """The ``ObjectRef`` of ``add(key, n)`` on the key's actor."""
        return self.actors[zlib.crc32(key.encode()) % self.size].add.remote(key, n)


def warm(pool: Pool, keys: list[str], in_flight: int, deadline: float) -> int:
    """One ``add(1)`` on every key (so every counter exists, as bayou's warm-up activates
    every actor); the number done."""
    pending: list[Any] = []
    done = 0
    for key in keys:
        if time.monotonic() > deadline:
            break
        pending.append(pool.add(key))
        if len(pending) >= in_flight:
            ready, pending = ray.wait(pending, num_returns=len(pending) // 2)
            ray.get(ready)
            done += len(ready)
    ray.get(pending)
    return done + len(pending)


def blocking(pool: Pool, keys: list[str], spec: LoadSpec) -> dict[str, Any]:
    """``spec.concurrency`` calls in flight, driven with ``ray.get`` / ``ray.wait``."""
    choose = random.choice
    clock = time.perf_counter
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    start = clock()
    measure_from = start + spec.warmup
    stop_at = measure_from + spec.duration
    if spec.concurrency == 1:
        while clock() < stop_at and len(latencies) < spec.max_ops:
            t0 = clock()
            try:
                ray.get(pool.add(choose(keys)), timeout=spec.timeout)
            except Exception as exc:
                if t0 >= measure_from:
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
                continue
            if t0 >= measure_from:
                latencies.append(clock() - t0)
    else:
        sent: dict[Any, float] = {}
        for _ in range(spec.concurrency):
            sent[pool.add(choose(keys))] = clock()
        while sent:
            ready, _ = ray.wait(list(sent), num_returns=1, timeout=spec.timeout)
            if not ready:
                raise TimeoutError(f"no Ray call finished in {spec.timeout}s")
            now = clock()
            for ref in ready:
                t0 = sent.pop(ref)
                try:
                    ray.get(ref)
                except Exception as exc:
                    if t0 >= measure_from:
                        errors += 1
                        first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
                else:
                    if t0 >= measure_from:
                        latencies.append(now - t0)
                if now < stop_at and len(latencies) < spec.max_ops:
                    sent[pool.add(choose(keys))] = clock()
    # Calls sent before the end and finished after it count, as in the closed asyncio loop.
    result = summarize(latencies, min(clock(), stop_at) - measure_from, errors)
    result["first_error"] = first_error
    return result


def with_asyncio(pool: Pool, spec: LoadSpec) -> dict[str, Any]:
    async def op(key: str) -> Any:
        return await pool.add(key)  # bounded by the parent's deadline on this process

    return asyncio.run(_timed(spec, op))


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    actors = int(config["actors"])
    spec_fields = {k: config[k] for k in ("duration", "warmup", "key_count", "timeout")}
    keys = [f"k{i}" for i in range(int(config["key_count"]))]
    deadline = time.monotonic() + float(config["budget"])
    started = time.monotonic()
    ray.init(
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=config.get("temp_dir"),
    )
    out: dict[str, Any] = {"ray": ray.__version__, "actors": actors, "pid": os.getpid()}
    try:
        out["init_s"] = round(time.monotonic() - started, 2)
        pool = Pool(actors)
        ray.get([actor.add.remote("ready", 0) for actor in pool.actors])
        log(f"{actors} actors up after {time.monotonic() - started:.1f}s; warming")
        t0 = time.monotonic()
        out["warmed"] = warm(pool, keys, 512, deadline)
        out["warm_s"] = round(time.monotonic() - t0, 2)
        for c in config["levels"]:
            level: dict[str, Any] = {}
            for style in ("blocking", "asyncio"):
                if time.monotonic() > deadline:
                    log(f"budget spent, c={c} {style} not measured")
                    continue
                log(f"c={c} {style}")
                spec = LoadSpec(kind="ray", urls=[], concurrency=int(c), **spec_fields)
                # The client is this driver; the servers, every Ray process under it
                # (GCS, raylet, the actors' workers).
                client, everything = cpu.tree(os.getpid(), own_only=True), cpu.tree(os.getpid())
                row = (
                    blocking(pool, keys, spec) if style == "blocking" else with_asyncio(pool, spec)
                )
                client = cpu.tree(os.getpid(), own_only=True) - client
                everything = cpu.tree(os.getpid()) - everything
                row["cpu_ms_per_call"] = {
                    name: cpu.per_call_ms(seconds, row, spec.warmup, spec.duration)
                    for name, seconds in (
                        ("servers", everything - client),
                        ("client", client),
                        ("total", everything),
                    )
                }
                level[style] = row
            if level:
                best = max(level, key=lambda s: float(level[s]["throughput"]))
                out[f"c{c}"] = level[best] | {"style": best, "styles": level}
    finally:
        ray.shutdown()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
