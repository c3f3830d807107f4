"""A load generator: one process, many concurrent callers, bounded in count and in time.

Run by the harness as ``python -m bench.loadgen '<json spec>'`` so the load never shares
the silo's process; it prints one JSON result on stdout. The spec (``LoadSpec``) says what
to call (a bayou client over the link or HTTP, a plain aiohttp client, or the echo
ceilings), how (concurrency, duration, at most how many operations) and on which keys.

aiohttp and uvloop are imported where they are used, so that a peer's driver running in
another virtualenv (``bench/peers/ray_driver.py``) can reuse the timed loop and its figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.stats import summarize

Op = Callable[[str], Awaitable[Any]]


@dataclass
class LoadSpec:
    """What one load generator does. ``kind``:

    - ``bayou-link`` / ``bayou-http``: ``bayou.Client`` with that transport;
    - ``raw-http``: a plain aiohttp client with keep-alive, JSON bodies, no retries;
    - ``echo-link``: a bare ``LinkPool`` against a link echo server (a ceiling).

    ``mode`` ``timed`` calls random keys until ``duration`` or ``max_ops``; ``each`` calls
    every key once (``keys_file`` or ``key_count`` keys), timing each first call.
    """

    kind: str
    urls: list[str]
    op: str = "add"  # add | get | tell
    concurrency: int = 1
    duration: float = 5.0
    warmup: float = 0.0
    max_ops: int = 1_000_000
    mode: str = "timed"
    key_prefix: str = "k"
    key_count: int = 10_000
    keys_file: str | None = None
    timeout: float = 30.0
    max_attempts: int = 6
    timeline: float = 0.0  # seconds per bucket of a success/error timeline; 0 = none
    extra: dict[str, Any] = field(default_factory=dict)


def keys_of(spec: LoadSpec) -> list[str]:
    if spec.keys_file:
        with open(spec.keys_file) as source:
            return [line.strip() for line in source if line.strip()]
    return [f"{spec.key_prefix}{i}" for i in range(spec.key_count)]


async def make_op(spec: LoadSpec, stack: list[Callable[[], Awaitable[None]]]) -> Op:
    """The coroutine function that performs one operation on a key."""
    if spec.kind in ("bayou-link", "bayou-http", "bayou-auto"):
        from bayou.client import Client
        from bench.app import Counter

        client = Client(
            spec.urls,
            transport=spec.kind.removeprefix("bayou-"),
            timeout=spec.timeout,
            max_attempts=spec.max_attempts,
        )
        stack.append(client.close)
        handlers: dict[str, Callable[..., Awaitable[Any]]] = {}

        def bound(key: str) -> Callable[..., Awaitable[Any]]:
            handler = handlers.get(key)
            if handler is None:
                ref = client.ref(Counter, key)
                handler = {"add": ref.add, "get": ref.get, "tell": ref.tell.add}[spec.op]
                handlers[key] = handler
            return handler

        if spec.op == "get":
            return lambda key: bound(key)()
        return lambda key: bound(key)(n=1)

    if spec.kind == "raw-http":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(spec.concurrency, 1)),
            timeout=aiohttp.ClientTimeout(total=spec.timeout),
        )
        stack.append(session.close)
        base = spec.urls[0]
        suffix = {"add": "add", "get": "get", "tell": "add/tell"}[spec.op]
        # Another server's route (a peer's ingress): ``extra`` {"path": ".../{key}/...",
        # "body": "..."}; by default bayou's own call route.
        path = str(spec.extra.get("path", f"/v1/actors/counter/{{key}}/{suffix}"))
        before, _, after = path.partition("{key}")
        before = base + before
        default_body = "{}" if spec.op == "get" else '{"n":1}'
        body = str(spec.extra.get("body", default_body)).encode()
        headers = {"Content-Type": "application/json"}

        async def post(key: str) -> Any:
            url = before + key + after
            async with session.post(url, data=body, headers=headers) as response:
                data = await response.read()
                if response.status >= 300:
                    raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
                return data

        return post

    if spec.kind == "echo-link":
        from bayou.link import LinkPool

        pool = LinkPool()
        stack.append(pool.close)
        address = spec.urls[0]

        async def request(key: str) -> Any:
            payload = {"op": "call", "type": "counter", "key": key, "method": spec.op}
            return await pool.request(address, payload | {"args": {"n": 1}}, spec.timeout)

        return request

    raise ValueError(f"unknown load kind {spec.kind!r}")


async def run(spec: LoadSpec) -> dict[str, Any]:
    started_at = time.time()
    stack: list[Callable[[], Awaitable[None]]] = []
    try:
        op = await make_op(spec, stack)
        if spec.mode == "each":
            result = await _each(spec, op)
        else:
            result = await _timed(spec, op)
        total = spec.extra.get("await_total")
        if total is not None:
            result["applied_s"] = await _until_applied(spec, int(total), started_at)
    finally:
        for close in reversed(stack):
            await close()
    result["started_at"] = started_at
    return result


async def _until_applied(spec: LoadSpec, total: int, started_at: float) -> float | None:
    """Seconds from the start until the distinct keys' counters add up to ``total``."""
    from bayou.client import Client
    from bench.app import Counter

    keys = sorted(set(keys_of(spec)))
    async with Client(spec.urls, transport="link", timeout=spec.timeout) as client:
        refs = [client.ref(Counter, key) for key in keys]
        deadline = time.monotonic() + spec.duration
        while time.monotonic() < deadline:
            values = await asyncio.gather(*(ref.get() for ref in refs))
            if sum(values) >= total:
                return round(time.time() - started_at, 3)
            await asyncio.sleep(0.05)
    return None


async def _timed(spec: LoadSpec, op: Op) -> dict[str, Any]:
    keys = keys_of(spec)
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + spec.warmup
    stop_at = measure_from + spec.duration
    latencies: list[float] = []
    errors = 0
    done = 0
    buckets: dict[int, list[int]] = {}
    first_error: str | None = None
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal errors, done, first_error
        choose = random.choice
        while done < spec.max_ops:
            now = loop.time()
            if now >= stop_at:
                return
            key = choose(keys)
            t0 = clock()
            ok = True
            try:
                await op(key)
            except Exception as exc:
                ok = False
                if first_error is None:
                    first_error = f"{type(exc).__name__}: {exc}"[:300]
            t1 = clock()
            if now >= measure_from:
                done += 1
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
                if spec.timeline:
                    bucket = buckets.setdefault(int((now - measure_from) / spec.timeline), [0, 0])
                    bucket[0 if ok else 1] += 1

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    elapsed = min(loop.time(), stop_at) - measure_from
    result = summarize(latencies, elapsed, errors)
    result["first_error"] = first_error
    if spec.timeline:
        last = max(buckets, default=-1)
        result["timeline"] = [buckets.get(i, [0, 0]) for i in range(last + 1)]
    return result


async def _each(spec: LoadSpec, op: Op) -> dict[str, Any]:
    keys = keys_of(spec)[: spec.max_ops]
    loop = asyncio.get_running_loop()
    start = loop.time()
    stop_at = start + spec.duration
    latencies: list[float] = []
    finished_at: list[float] = []
    errors = 0
    first_error: str | None = None
    pending = iter(keys)
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal errors, first_error
        for key in pending:
            if loop.time() >= stop_at:
                return
            t0 = clock()
            try:
                await op(key)
            except Exception as exc:
                errors += 1
                if first_error is None:
                    first_error = f"{type(exc).__name__}: {exc}"[:300]
                continue
            latencies.append(clock() - t0)
            finished_at.append(loop.time() - start)

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    elapsed = loop.time() - start
    result = summarize(latencies, elapsed, errors)
    result["first_error"] = first_error
    result["keys"] = len(keys)
    result["last_ok_s"] = round(max(finished_at, default=0.0), 3)
    return result


def main(argv: list[str]) -> int:
    import uvloop

    spec = LoadSpec(**json.loads(argv[0]))
    result = uvloop.run(run(spec))
    print(json.dumps(result))
    return 0


def spec_json(spec: LoadSpec) -> str:
    return json.dumps(asdict(spec))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
