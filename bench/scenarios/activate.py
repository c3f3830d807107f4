"""``activate``: actors never seen before, first call each — at the throughput concurrency,
and one at a time for the latency that the goal compares with a warm call's."""

from __future__ import annotations

from typing import Any

from bench.context import Bench
from bench.loadgen import LoadSpec
from bench.stats import ratio


def run(bench: Bench) -> dict[str, Any]:
    _, url = bench.main_silo()
    out: dict[str, Any] = {}
    for label, count, concurrency in (
        ("bulk", bench.mode.activate, bench.mode.high),
        ("serial", bench.mode.activate_serial, 1),
    ):
        spec = LoadSpec(
            kind="bayou-link",
            urls=[url],
            mode="each",
            concurrency=concurrency,
            key_prefix=f"cold-{label}-",
            key_count=count,
            duration=min(120.0, max(10.0, bench.time_left() / 3)),
        )
        out[label] = bench.load(spec, f"activate {count} cold actors c={concurrency}")
        bench.progress.advance()
    warm = (bench.results.get("call") or {}).get("bayou-link c1")
    if warm:
        out["warm_p50_ms"] = warm["p50_ms"]
        out["cold_over_warm_p50"] = ratio(out["serial"]["p50_ms"], warm["p50_ms"])
    return out
