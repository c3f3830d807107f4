"""``recover``: SIGKILL the silo hosting N active actors; time until every one answers.

A cluster of two or three silos on Redis; N actors all owned by the victim are activated,
then the victim is killed and a client (seeded with every silo, retrying) calls each actor
until it answers. The goal compares the time with failure detection (lease + heartbeat)
plus 2 s; the time the survivors took to see the victim dead is measured alongside.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.cluster import dead_seen, keys_owned_by, wait_settled
from bench.context import Bench
from bench.loadgen import LoadSpec


def run(bench: Bench) -> dict[str, Any]:
    mode = bench.mode
    bench.need(25, "recover")
    redis_url = bench.redis_url()
    silos = [
        bench.procs.silo(f"silo-recover-{i}", redis_url=redis_url, cluster="recover")
        for i in range(mode.recover_silos)
    ]
    urls = [url for _, url in silos]
    settle_s = wait_settled(urls, len(urls))
    victim, victim_url = silos[-1]
    keys = keys_owned_by(urls[0], victim_url, mode.recover_actors, "v")
    keys_file = bench.workdir / "recover-keys.txt"
    keys_file.write_text("\n".join(keys))
    spec = LoadSpec(
        kind="bayou-link",
        urls=urls,
        mode="each",
        concurrency=mode.high,
        keys_file=str(keys_file),
        duration=60.0,
        timeout=60.0,
        max_attempts=10_000,
    )
    activated = bench.load(spec, f"recover: activate {len(keys)} actors on the victim")
    bench.progress.advance()

    survivors = urls[:-1]
    detected: list[float] = []

    def watch(killed_at: float) -> None:
        while time.time() - killed_at < 30 and not detected:
            if dead_seen(survivors[0], victim_url):
                detected.append(time.time() - killed_at)
            time.sleep(0.05)

    killed_at = time.time()
    victim.kill()
    watcher = threading.Thread(target=watch, args=(killed_at,), daemon=True)
    watcher.start()
    result = bench.load(spec, f"recover: SIGKILL the victim, call all {len(keys)} again")
    watcher.join(timeout=35)
    bench.progress.advance()
    # The load generator started a little after the kill; count from the kill itself.
    recovered_s = round(result["started_at"] - killed_at + result["last_ok_s"], 3)
    for child, _ in silos[:-1]:
        child.stop()
    detection_bound = 3.0 + 0.5  # the default lease + heartbeat_interval
    return {
        "silos": len(urls),
        "actors": len(keys),
        "settle_s": round(settle_s, 3),
        "activate_throughput": activated["throughput"],
        "answered": result["ops"],
        "failed": result["errors"],
        "detected_s": round(detected[0], 3) if detected else None,
        "recovered_s": recovered_s,
        "detection_bound_s": detection_bound,
        "goal_s": detection_bound + 2.0,
        "call_p99_ms": result["p99_ms"],
    }
