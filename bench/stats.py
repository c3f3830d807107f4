"""Latency summaries: percentiles of one run, and the median of several runs' figures."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` (0..1) quantile of sorted values, nearest rank; 0.0 for none."""
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def summarize(latencies: Sequence[float], elapsed: float, errors: int = 0) -> dict[str, Any]:
    """Throughput and latency (milliseconds) of ``latencies`` (seconds) done in ``elapsed``."""
    ordered = sorted(latencies)
    ms = 1000.0
    return {
        "ops": len(ordered),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "throughput": round(len(ordered) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(ordered, 0.50) * ms, 3),
        "p90_ms": round(percentile(ordered, 0.90) * ms, 3),
        "p99_ms": round(percentile(ordered, 0.99) * ms, 3),
        "max_ms": round((ordered[-1] if ordered else 0.0) * ms, 3),
    }


FIGURES = ("throughput", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def median_of(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over ``runs`` (taken figure by figure), with the run count."""
    if not runs:
        return {}
    merged: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 3) for k in FIGURES}
    merged["ops"] = sum(r["ops"] for r in runs)
    merged["errors"] = sum(r["errors"] for r in runs)
    merged["runs"] = len(runs)
    return merged


def ratio(value: float, ceiling: float) -> float | None:
    """``value / ceiling`` to three places; None when there is no ceiling to compare with."""
    return round(value / ceiling, 3) if ceiling > 0 else None
