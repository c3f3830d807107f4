"""``replay``: how long activation takes against the journal's length.

Actors get ``L`` journaled calls each on a standalone silo (embedded store) that snapshots
every ``snapshot_every`` records; the silo is then SIGKILLed, so no final snapshot is
written, and restarted on the same data. The first call of each actor after the restart
loads its snapshot and replays only the records after it: the time should stay flat once
``L`` passes the snapshot interval.
"""

from __future__ import annotations

from typing import Any

from bench.context import Bench
from bench.loadgen import LoadSpec


def run(bench: Bench) -> dict[str, Any]:
    mode = bench.mode
    every = mode.snapshot_every
    data = str(bench.workdir / "replay.db")
    settings = {"snapshot_every": str(every), "snapshot_interval": "3600", "idle_timeout": "3600"}
    child, url = bench.procs.silo("silo-replay", data=data, settings=settings)
    # Interleaved, so many actors' turns share each group commit.
    keys = [
        f"r{length}-{i}"
        for length in mode.replay_lengths
        for _ in range(length)
        for i in range(mode.replay_actors)
    ]
    keys_file = bench.workdir / "replay-keys.txt"
    keys_file.write_text("\n".join(keys))
    build = LoadSpec(
        kind="bayou-link",
        urls=[url],
        mode="each",
        concurrency=mode.high,
        keys_file=str(keys_file),
        max_ops=len(keys),
        duration=120.0,
    )
    built = bench.load(build, f"replay: journal {len(keys)} calls")
    bench.progress.advance()
    child.kill()  # no final snapshots: what is left to replay is what a crash leaves
    child, url = bench.procs.silo("silo-replay-2", data=data, settings=settings)
    rows = []
    for length in mode.replay_lengths:
        spec = LoadSpec(
            kind="bayou-link",
            urls=[url],
            op="get",
            mode="each",
            concurrency=1,
            key_prefix=f"r{length}-",
            key_count=mode.replay_actors,
            duration=30.0,
        )
        result = bench.load(spec, f"replay: first call after {length} records")
        rows.append(
            {
                "journal": length,
                "replayed": length % every,
                "p50_ms": result["p50_ms"],
                "max_ms": result["max_ms"],
                "actors": result["ops"],
            }
        )
    bench.progress.advance()
    child.stop()
    flat = [r["p50_ms"] for r in rows if r["journal"] >= every]
    return {
        "snapshot_every": every,
        "build_throughput": built["throughput"],
        "rows": rows,
        "max_p50_past_interval_ms": max(flat, default=None),
    }
