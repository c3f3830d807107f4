"""The issue's goals, each checked against this run's figures (None: not measured here)."""

from __future__ import annotations

from typing import Any


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _goal(goal: str, target: str, measured: Any, met: bool | None) -> dict[str, Any]:
    return {"goal": goal, "target": target, "measured": measured, "met": met}


def _at_least(value: Any, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _at_most(value: Any, bound: float) -> bool | None:
    return None if value is None else value <= bound


def evaluate(results: dict[str, Any], high: int) -> list[dict[str, Any]]:
    c = f"c{high}"
    link = _get(results, "call", f"bayou-link {c}") or {}
    raw = _get(results, "call", f"raw-http {c}") or {}
    raw1 = _get(results, "call", "raw-http c1") or {}
    query = _get(results, "query", f"raw-http {c}") or {}
    goals = [
        _goal(
            f"durable call, Python client fast path, c={high}",
            ">= 15,000 calls/s",
            link.get("throughput"),
            _at_least(link.get("throughput"), 15_000),
        ),
        _goal(
            "... as a share of the durable echo ceiling",
            ">= 0.80",
            link.get("ratio"),
            _at_least(link.get("ratio"), 0.8),
        ),
        _goal(
            f"durable call over plain HTTP, c={high}, share of the HTTP ceiling",
            ">= 0.70",
            raw.get("ratio"),
            _at_least(raw.get("ratio"), 0.7),
        ),
        _goal(
            "durable call over plain HTTP, p50 at c=1",
            "<= 1 ms",
            raw1.get("p50_ms"),
            _at_most(raw1.get("p50_ms"), 1.0),
        ),
        _goal(
            f"query over plain HTTP, c={high}, share of the HTTP ceiling",
            ">= 0.70",
            query.get("ratio"),
            _at_least(query.get("ratio"), 0.7),
        ),
    ]
    cold = _get(results, "activate", "cold_over_warm_p50")
    goals.append(_goal("cold activation p50 / warm call p50", "<= 2", cold, _at_most(cold, 2.0)))
    rows = _get(results, "replay", "rows") or []
    every = _get(results, "replay", "snapshot_every")
    if rows and every:
        past = [r["p50_ms"] for r in rows if r["journal"] >= every]
        empty = next((r["p50_ms"] for r in rows if r["journal"] == 0), None)
        worst_in = max((r["p50_ms"] for r in rows if r["journal"] < every), default=None)
        spread = max(past) if past else None
        bound = worst_in * 1.25 if worst_in is not None else None
        goals.append(
            _goal(
                "replay time flat past the snapshot interval",
                f"p50 past {every} records <= 1.25 x the worst below it",
                f"{spread} ms (empty journal {empty} ms, worst below {worst_in} ms)",
                None if spread is None or bound is None else spread <= bound,
            )
        )
    mem_rows = _get(results, "memory", "rows") or []
    if mem_rows:
        worst = max(r["bytes_per_activation"] for r in mem_rows)
        goals.append(
            _goal(
                "silo memory per idle activation (state included)",
                "<= 1,024 B beyond the state",
                f"{worst} B",
                _at_most(worst, 1024 + 200),
            )
        )
    recover = results.get("recover") or {}
    if recover.get("recovered_s") is not None:
        goals.append(
            _goal(
                f"recover {recover['actors']} actors after SIGKILL",
                f"<= detection + 2 s = {recover['goal_s']} s",
                f"{recover['recovered_s']} s (detected dead after {recover['detected_s']} s)",
                recover["recovered_s"] <= recover["goal_s"] and recover["failed"] == 0,
            )
        )
    scale = results.get("scale") or {}
    if "failed" in scale:
        goals.append(
            _goal(
                "add a silo under load: calls failed after retries",
                "0",
                f"{scale['failed']} of {scale['calls']} (ring settled in {scale['settle_s']} s)",
                scale["failed"] == 0,
            )
        )
    return goals
