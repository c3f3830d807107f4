"""Ceilings, measured in the same run by the same load generator as bayou itself.

- ``http``: an aiohttp server answering the call route with a fixed reply;
- ``link``: bayou's link (websocket, batched msgpack) answering at once;
- ``durable_link``: the link, each request made durable by one Redis append, group-committed;
- ``redis``: ``redis-benchmark`` pipelined, when it is installed.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

from bench.context import Bench
from bench.procs import find_binary, free_port


def run(bench: Bench) -> dict[str, Any]:
    mode = bench.mode
    out: dict[str, Any] = {}
    levels = (1, mode.high)

    port = free_port()
    server = bench.procs.python(
        "echo-http", "bench.echo", ["http", "--port", str(port)], f"http://127.0.0.1:{port}/readyz"
    )
    url = f"http://127.0.0.1:{port}"
    out["http"] = {
        f"c{c}": bench.timed(bench.spec("raw-http", [url], concurrency=c), f"ceiling http c={c}")
        for c in levels
    }
    server.stop()

    for name, args in (("link", []), ("durable_link", ["--redis", bench.redis_url()])):
        if name == "durable_link" and not mode.redis:
            continue
        port = free_port()
        server = bench.procs.python(
            f"echo-{name}",
            "bench.echo",
            ["link", "--port", str(port), *args],
            f"http://127.0.0.1:{port}/readyz",
        )
        url = f"http://127.0.0.1:{port}"
        out[name] = {
            f"c{c}": bench.timed(
                bench.spec("echo-link", [url], concurrency=c), f"ceiling {name} c={c}"
            )
            for c in levels
        }
        server.stop()

    if mode.redis_benchmark_requests:
        out["redis"] = redis_benchmark(bench)
    return out


def redis_benchmark(bench: Bench) -> dict[str, Any]:
    """SET and XADD, 50 clients, pipelines of 16: what the Redis under bayou can take."""
    binary = find_binary("redis-benchmark")
    if binary is None:
        bench.note(
            "redis-benchmark is not installed (apt-get install redis-tools): "
            "no Redis ceiling in this report"
        )
        return {"missing": "redis-benchmark not on PATH"}
    port = re.search(r":(\d+)/", bench.redis_url())
    assert port is not None
    bench.progress.start("ceiling redis-benchmark")
    base = [binary, "-h", "127.0.0.1", "-p", port.group(1), "--csv", "-c", "50", "-P", "16"]
    base += ["-n", str(bench.mode.redis_benchmark_requests)]
    found: dict[str, Any] = {"clients": 50, "pipeline": 16}
    # SET is redis-benchmark's own test; XADD (what a journal append is) a custom command.
    for name, extra in (("set", ["-t", "set"]), ("xadd", ["XADD", "bench:ceiling", "*", "d", "1"])):
        done = subprocess.run(
            base + extra, capture_output=True, text=True, timeout=120, check=False
        )
        rows = [line.split('","') for line in done.stdout.splitlines()[1:] if line.count(",") > 1]
        try:
            found[name] = float(rows[0][1].strip('"'))
        except (IndexError, ValueError):
            bench.note(f"redis-benchmark {name} gave no figure: {done.stdout[-200:]}")
    bench.progress.advance()
    return found
