"""``memory``: silo RSS per idle activation, holding 100k (and, in full mode, 1M) actors.

A standalone silo on the embedded store (so the store's data is on disk, not in the silo's
memory); each actor is activated by one query, which journals nothing: what is measured is
the activation itself and its (default) state. The state's own share is measured apart,
the same way (RSS over many default instances of the counter's state model, in a process
of its own), so that the runtime's cost per activation is the difference.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from bench.cluster import view
from bench.context import Bench, SkipScenario
from bench.loadgen import LoadSpec
from bench.procs import ROOT, rss_bytes


def run(bench: Bench) -> dict[str, Any]:
    settings = {"idle_timeout": "86400", "snapshot_interval": "3600"}
    child, url = bench.procs.silo(
        "silo-memory", data=str(bench.workdir / "memory.db"), settings=settings
    )
    warm = LoadSpec(
        kind="bayou-link", urls=[url], op="get", mode="each", key_prefix="w", key_count=200
    )
    bench.load(warm, "memory: warm the silo")
    time.sleep(0.5)
    base = rss_bytes(child.pid)
    rows = []
    held = 0
    try:
        for target in bench.mode.memory:
            bench.need(target / 4000 + 10, f"memory at {target} activations")
            spec = LoadSpec(
                kind="bayou-link",
                urls=[url],
                op="get",
                mode="each",
                concurrency=bench.mode.high,
                key_prefix="m",
                key_count=target,
                max_ops=target,
                duration=max(30.0, bench.time_left() - 5),
            )
            # Keys m0..m{held-1} are active already: only the new ones are asked for.
            spec.keys_file = str(bench.workdir / f"memory-{target}.txt")
            with open(spec.keys_file, "w") as out:
                out.write("\n".join(f"m{i}" for i in range(held, target)))
            result = bench.load(spec, f"memory: hold {target} idle activations")
            held = target
            time.sleep(1.0)
            rss = rss_bytes(child.pid)
            activations = int(view(url)["stats"]["activations"])
            rows.append(
                {
                    "target": target,
                    "activations": activations,
                    "rss_mb": round(rss / 2**20, 1),
                    "bytes_per_activation": round((rss - base) / max(activations, 1)),
                    "activation_throughput": result["throughput"],
                }
            )
            bench.progress.advance()
    except SkipScenario as exc:
        bench.note(str(exc))
    finally:
        child.kill()  # a drain of a million activations would only cost time here
    state = state_bytes()
    for row in rows:
        row["beyond_state"] = row["bytes_per_activation"] - state
    return {"base_rss_mb": round(base / 2**20, 1), "state_bytes": state, "rows": rows}


_STATE_PROBE = """
import gc, sys
from bench.app import Tally
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096
n = int(sys.argv[1])
gc.collect()
before = rss()
held = [Tally() for _ in range(n)]
gc.collect()
print((rss() - before) // n - 8)  # less the list's pointer to each
"""


def state_bytes(count: int = 200_000) -> int:
    """RSS per default instance of the counter's state model, as an activation holds it."""
    out = subprocess.run(
        [sys.executable, "-c", _STATE_PROBE, str(count)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,  # where ``bench`` imports from
    )
    return int(out.stdout.strip())
