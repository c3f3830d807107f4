"""The dashboard: one self-contained page any silo serves, and the JSON it polls.

``/dashboard`` is a static page (``dashboard.html``: no external scripts, fonts or styles,
so it works offline and behind a strict proxy). Every second it fetches
``/v1/dashboard.json`` from the silo that served it; that silo asks each live member for
its own figures over the silo links (the ``stats`` link request) and answers with the
whole cluster. Figures are cumulative; the page turns successive answers into rates and
latency percentiles, so the silos keep no per-viewer state.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from importlib import resources
from typing import TYPE_CHECKING, Any

from bayou.placement.membership import SiloStatus
from bayou.runtime.metrics import LATENCY_BUCKETS, telemetry_of

if TYPE_CHECKING:
    from bayou.placement.membership import Member
    from bayou.runtime.silo import Silo

STATS_OP = "stats"  # the link request a silo answers with ``local_stats``
STATS_TIMEOUT = 1.0  # seconds to wait for a member's figures; past it, shown unreachable
MAX_DEAD_SHOWN = 10  # dead members are kept forever in membership: show the latest few
ERRORS_SHOWN = 30
_ACTIVATIONS_TTL = 1.0  # counting activations by type is O(n): at most once a second


def page() -> bytes:
    """The dashboard's HTML, shipped inside the package."""
    return resources.files("bayou.runtime").joinpath("dashboard.html").read_bytes()


def local_stats(silo: Silo) -> dict[str, Any]:
    """This silo's cumulative figures (plain data: they travel over the link as msgpack)."""
    telemetry = telemetry_of(silo)
    buckets, seconds = telemetry.latency_totals()
    calls_by_type: Counter[str] = Counter()
    failed = 0
    for (type_name, _), stats in telemetry.calls.items():
        calls_by_type[type_name] += stats.count
        failed += stats.count - stats.outcomes["ok"]
    tells = sum(sum(outcomes.values()) for outcomes in telemetry.tells.values())
    counts = silo.catalog.metrics
    return {
        "silo": silo.silo_id,
        "ready": silo.ready,
        "lease_valid": silo.agent.lease_valid(),
        "started": telemetry.started,
        "time": time.time(),
        "activations": _activations_by_type(silo),
        "calls": {
            "total": sum(calls_by_type.values()),
            "failed": failed,
            "by_type": dict(calls_by_type),
        },
        "tells": tells,
        "latency": {"bounds": list(LATENCY_BUCKETS), "buckets": buckets, "sum": seconds},
        "forwarded": silo.router.forwarded,
        "received": silo.router.received,
        "fenced_writes": silo.catalog.fenced_writes,
        "handoffs": silo.rebalancer.handoffs,
        "journal_appends": silo.committer.commits_flushed,
        "journal_batches": silo.committer.batches_flushed,
        "snapshots": counts["snapshots"],
        "passivations": counts["passivations"],
        "reminder_lag_max": silo.reminders.lag_max,
        "errors": list(telemetry.errors)[:ERRORS_SHOWN],
        "errors_total": telemetry.errors_total,
    }


def _activations_by_type(silo: Silo) -> dict[str, int]:
    telemetry = telemetry_of(silo)
    cached = telemetry.activations_cache
    now = time.monotonic()
    if cached is not None and now - cached[0] < _ACTIVATIONS_TTL:
        return cached[1]
    counts = dict(Counter(a.spec.type_name for a in silo.catalog.activations()))
    telemetry.activations_cache = (now, counts)
    return counts


async def cluster_stats(silo: Silo) -> dict[str, Any]:
    """The whole cluster as this silo sees it: members with their figures, merged errors."""
    view = silo.agent.view
    ring = silo.agent.ring
    alive = [m for m in view.members if m.status is not SiloStatus.DEAD]
    dead = [m for m in view.members if m.status is SiloStatus.DEAD]
    dead.sort(key=lambda m: m.registered_at, reverse=True)
    shown = sorted(alive, key=lambda m: m.silo) + dead[:MAX_DEAD_SHOWN]
    figures = await asyncio.gather(*(_figures_of(silo, m) for m in alive))
    by_silo = dict(zip((m.silo for m in alive), figures, strict=True))
    members = []
    errors: list[dict[str, Any]] = []
    for member in shown:
        stats = by_silo.get(member.silo)
        entry: dict[str, Any] = {
            "id": member.silo,
            "address": member.address,
            "status": str(member.status),
            "partitions": len(ring.partitions_of(member.silo)),
            "self": member.silo == silo.silo_id,
        }
        if isinstance(stats, str):
            entry["unreachable"] = stats
        elif stats is not None:
            entry["stats"] = stats
            errors.extend(stats.get("errors", ()))
        members.append(entry)
    errors.sort(key=lambda e: e.get("time", 0.0), reverse=True)
    return {
        "cluster": silo.cluster or "standalone",
        "silo": silo.silo_id,
        "ring_version": view.version,
        "partitions": silo.settings.partitions,
        "time": time.time(),
        "members": members,
        "dead_not_shown": max(0, len(dead) - MAX_DEAD_SHOWN),
        "errors": errors[:ERRORS_SHOWN],
    }


async def _figures_of(silo: Silo, member: Member) -> dict[str, Any] | str:
    """A member's ``local_stats``, or why it could not be had."""
    if member.silo == silo.silo_id:
        return local_stats(silo)
    try:
        reply = await silo.router.links.request(member.address, {"op": STATS_OP}, STATS_TIMEOUT)
    except Exception as exc:  # a member going away must not break the page
        return f"{type(exc).__name__}: {exc}"[:200]
    return reply if isinstance(reply, dict) else "malformed reply"
