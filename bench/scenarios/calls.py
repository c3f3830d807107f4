"""``call``, ``query`` and ``tell`` on one silo, over the Python client (link and HTTP) and
a plain HTTP client, each figure next to its ceiling."""

from __future__ import annotations

from typing import Any

from bench.context import Bench
from bench.loadgen import LoadSpec
from bench.stats import ratio

# Which ceiling each client's figures are compared with: the link against the link (durable
# for exclusive calls, bare for queries), HTTP against the aiohttp echo.
CLIENTS = (("bayou-link", "link"), ("bayou-http", "http"), ("raw-http", "http"))


def _ceiling(
    bench: Bench, family: str, durable: bool, level: str
) -> tuple[str, dict[str, Any]] | None:
    ceilings = bench.results.get("ceilings") or {}
    for name in ("durable_link", family) if family == "link" and durable else (family,):
        found = (ceilings.get(name) or {}).get(level)
        if isinstance(found, dict):
            return f"{name} {level}", found
    return None


def _compare(bench: Bench, row: dict[str, Any], family: str, durable: bool, level: str) -> None:
    """Add the ceiling's name, the throughput ratio and the p50 ratio (ceiling / bayou)."""
    found = _ceiling(bench, family, durable, level)
    if found is None:
        return
    row["ceiling"], ceiling = found
    row["ratio"] = ratio(row["throughput"], ceiling["throughput"])
    row["p50_ratio"] = ratio(ceiling["p50_ms"], row["p50_ms"])


def warm(bench: Bench, url: str) -> dict[str, Any]:
    """Activate the call workload's actors once, so the calls measured are warm."""
    spec = LoadSpec(
        kind="bayou-link",
        urls=[url],
        mode="each",
        concurrency=bench.mode.high,
        key_count=bench.mode.actors,
        duration=120.0,
    )
    result = bench.load(spec, f"warm {bench.mode.actors} actors")
    bench.progress.advance()
    return result


def run_call(bench: Bench) -> dict[str, Any]:
    _, url = bench.main_silo()
    out: dict[str, Any] = {"warm_up": warm(bench, url)}
    for kind, family in CLIENTS:
        for c in (1, bench.mode.high):
            level = f"c{c}"
            row = bench.timed(bench.spec(kind, [url], concurrency=c), f"call {kind} c={c}")
            _compare(bench, row, family, True, level)
            out[f"{kind} {level}"] = row
    return out


def run_query(bench: Bench) -> dict[str, Any]:
    _, url = bench.main_silo()
    out: dict[str, Any] = {}
    for kind, family in (("bayou-link", "link"), ("raw-http", "http")):
        for c in (1, bench.mode.high):
            level = f"c{c}"
            spec = bench.spec(kind, [url], concurrency=c, op="get")
            row = bench.timed(spec, f"query {kind} c={c}")
            _compare(bench, row, family, False, level)
            out[f"{kind} {level}"] = row
    return out


def run_tell(bench: Bench) -> dict[str, Any]:
    _, url = bench.main_silo()
    out: dict[str, Any] = {}
    level = f"c{bench.mode.high}"
    for kind, family in (("bayou-link", "link"), ("raw-http", "http")):
        spec = bench.spec(kind, [url], concurrency=bench.mode.high, op="tell")
        row = bench.timed(spec, f"tell (stored) {kind} {level}")
        _compare(bench, row, family, True, level)
        out[f"stored {kind} {level}"] = row
    # Until applied: every tell to a fresh set of actors, then until their counters show all.
    actors = max(1, min(1000, bench.mode.tells // 10))
    keys = [f"tell{i % actors}" for i in range(bench.mode.tells)]
    keys_file = bench.workdir / "tell-keys.txt"
    keys_file.write_text("\n".join(keys))
    spec = LoadSpec(
        kind="bayou-link",
        urls=[url],
        op="tell",
        mode="each",
        concurrency=bench.mode.high,
        keys_file=str(keys_file),
        duration=120.0,
        extra={"await_total": len(keys)},
    )
    result = bench.load(spec, f"tell (applied) {len(keys)} tells to {actors} actors")
    bench.progress.advance()
    applied = result.get("applied_s")
    result["applied_throughput"] = round(len(keys) / applied, 1) if applied else None
    out["applied"] = result
    return out
