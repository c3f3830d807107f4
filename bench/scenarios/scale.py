"""``scale``: add a silo to a two-silo cluster under load; time until the ring settles and
how many calls failed after the client's retries (the goal: none)."""

from __future__ import annotations

import time
from typing import Any

from bench.cluster import wait_settled
from bench.context import Bench
from bench.loadgen import LoadSpec

BUCKET = 0.5  # seconds per bucket of the throughput timeline


def run(bench: Bench) -> dict[str, Any]:
    mode = bench.mode
    bench.need(mode.scale_seconds + 20, "scale")
    redis_url = bench.redis_url()
    silos = [
        bench.procs.silo(f"silo-scale-{i}", redis_url=redis_url, cluster="scale") for i in range(2)
    ]
    urls = [url for _, url in silos]
    wait_settled(urls, 2)
    spec = LoadSpec(
        kind="bayou-link",
        urls=urls,
        concurrency=64,
        duration=mode.scale_seconds,
        warmup=0.5,
        key_prefix="s",
        key_count=mode.actors,
        timeout=30.0,
        max_attempts=1000,
        timeline=BUCKET,
    )
    load = bench.spawn_load(spec, "scale: 2 silos under load, then a third joins")
    time.sleep(spec.warmup + mode.scale_seconds / 3)
    joined_at = time.monotonic()
    third = bench.procs.silo("silo-scale-2", redis_url=redis_url, cluster="scale")
    ready_s = time.monotonic() - joined_at  # the new process is up and serving
    urls.append(third[1])
    silos.append(third)
    wait_settled(urls, 3)
    settle_s = time.monotonic() - joined_at  # every silo routes by the 3-silo ring
    result = load.result()
    bench.progress.advance()
    for child, _ in silos:
        child.stop()
    timeline = result.pop("timeline", [])
    per_second = [round((ok + bad) / BUCKET) for ok, bad in timeline]
    third_index = int(mode.scale_seconds / 3 / BUCKET)
    before = per_second[:third_index]
    after = per_second[third_index:]
    return {
        "ready_s": round(ready_s, 3),
        "settle_s": round(settle_s, 3),
        "calls": result["ops"],
        "failed": result["errors"],
        "throughput": result["throughput"],
        "throughput_before": round(sum(before) / len(before), 1) if before else None,
        "min_throughput_after_join": min(after) if after else None,
        "p99_ms": result["p99_ms"],
        "max_ms": result["max_ms"],
        "timeline_per_s": per_second,
    }
