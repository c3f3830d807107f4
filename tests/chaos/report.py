"""The chaos run's report: faults by kind, operations by outcome, violations, the witness,
failure detection and recovery, throughput before, during and after the faults."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tests.chaos.actors import LOCK_TTL_MS
from tests.chaos.checker import History, Violation
from tests.chaos.cluster import ChaosCluster
from tests.chaos.nemesis import KINDS, Nemesis

if TYPE_CHECKING:
    from tests.chaos.run import Clients, Config, Monitor


@dataclass
class Report:
    """Everything a run measured; ``ok`` is the verdict (no violation, no silo that ended
    unexpectedly, the final state read); a silo the harness had to abort for hanging is an
    anomaly: a liveness bug, not a broken promise. Written as ``report.json`` and ``report.txt``."""

    config: dict[str, Any]
    faults: list[dict[str, Any]] = field(default_factory=list)
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    operations: dict[str, dict[str, int]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    witness: dict[str, Any] = field(default_factory=dict)
    fenced_writes: int = 0
    exits: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    detection: dict[str, Any] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    timeline: list[int] = field(default_factory=list)
    silos: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    checked: bool = True  # False if the final state could not be read
    known: list[str] = field(default_factory=list)  # known runtime bugs seen, not counted
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        crashed = [e for e in self.exits if not e["expected"] and not e["hung"]]
        return self.checked and not self.violations and not crashed


# -- figures --------------------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def summarize(
    report: Report,
    config: Config,
    history: History,
    state: dict[str, dict[str, Any]],
    violations: list[Violation],
    witness: dict[str, Any],
    nemesis: Nemesis,
    monitor: Monitor,
    cluster: ChaosCluster,
    clients: Clients,
    phases: tuple[float, float, float, float],
) -> None:
    t0, t1, t2, t3 = phases
    wall0 = time.time() - (time.monotonic() - t0)  # t0 on the wall clock
    faults = nemesis.faults
    for i, fault in enumerate(faults):
        until = faults[i + 1].start if i + 1 < len(faults) else t3
        fault.recovered = monitor.recovery(fault, until)
    report.faults = [
        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(f).items()}
        | {"start": round(f.start - t0, 2), "end": round(f.end - t0, 2)}
        for f in faults
    ]
    report.faults_by_kind = {kind: sum(f.kind == kind for f in faults) for kind in KINDS}
    by_kind: dict[str, Counter[str]] = {}
    for op in history.ops:
        tally = by_kind.setdefault(op.kind, Counter())
        tally[op.first_outcome] += 1
        if op.first_outcome == "unknown":
            tally[f"unknown->{op.status}"] += 1
    report.operations = {k: dict(v) for k, v in sorted(by_kind.items())}
    report.operations["all"] = dict(history.outcomes())
    report.violations = [str(v) for v in violations]
    zombie, double = split_conflicts(witness["conflicts"], cluster, wall0, t0)
    report.violations += [
        f"[single-activation] {c['type']}/{c['key']}: turn of {c['taker']} while "
        f"{c['holder']} held the witness lock"
        for c in double
    ]
    if zombie:
        report.known.append(
            f"{len(zombie)} witness conflicts with a silo declared dead, before it learnt "
            "it (tests/chaos/test_zombies.py; since a silo checks its lease before every "
            "turn, only a turn already under way when the silo froze should show here)"
        )
    report.silos = [
        {
            "silo": s.name,
            "id": s.silo_id,
            "pid": s.pid,
            "port": s.port,
            "started": round(s.started - t0, 2),
            "exited": None if s.exited is None else round(s.exited - t0, 2),
            "exit_code": s.exit_code,
            "fenced_writes": s.fenced_writes,
        }
        for s in cluster.gone + cluster.silos
        if s.process.proc is not None
    ]
    report.witness = {k: v for k, v in witness.items() if k != "conflicts"}
    report.witness["conflict_list"] = [
        {**c, "at": round(c["at"] - wall0, 2)} for c in witness["conflicts"][:100]
    ]
    report.witness["conflicts"] = len(witness["conflicts"])
    report.fenced_writes = cluster.fenced_writes()
    report.exits = [{**asdict(e), "at": round(e.at - t0, 2)} for e in cluster.exits]
    for exit_ in cluster.exits:
        if not exit_.expected:
            report.anomalies.append(f"{exit_.silo} exited {exit_.code} ({exit_.reason})")
    report.anomalies += [f"silo failed to start: {f}" for f in cluster.start_failures]
    internal = sum(1 for op in history.ops if op.error.startswith("InternalError"))
    if internal:
        report.anomalies.append(f"{internal} operations answered InternalError")
    unresolved = sum(
        1 for op in history.ops if op.status == "unknown" and op.kind not in ("get", "read")
    )
    if unresolved:
        report.anomalies.append(f"{unresolved} mutations still unknown after resolution")
    failed = Counter(op.error.split(":")[0] for op in history.ops if op.status == "failed")
    if failed:
        report.anomalies.append(f"definite errors: {dict(failed)}")
    detect = {
        kind: _spread([f.detected for f in faults if f.kind == kind and f.detected is not None])
        for kind in ("kill", "freeze", "isolate")
    }
    detect["all"] = _spread([f.detected for f in faults if f.detected is not None])
    report.detection = detect
    recover: dict[str, Any] = {
        kind: _spread([f.recovered for f in faults if f.kind == kind and f.recovered is not None])
        for kind in KINDS
    }
    recover["all"] = _spread([f.recovered for f in faults if f.recovered is not None])
    recover["not_before_next_fault"] = sum(1 for f in faults if f.recovered is None)
    report.recovery = recover
    ends = [op.end for op in history.ops if op.first_outcome == "ok"]

    def rate(a: float, b: float) -> float:
        return round(sum(1 for e in ends if a <= e < b) / max(b - a, 1e-9), 1)

    report.throughput = {"before": rate(t0, t1), "during": rate(t1, t2), "after": rate(t2, t3)}
    report.timeline = [
        sum(1 for e in ends if t0 + s <= e < t0 + s + 1) for s in range(int(t3 - t0))
    ]
    applied = {
        tag: when
        for key, tags in state["sinks"].items()
        for tag, when in zip(tags, state["sink_at"][key], strict=False)
    }
    tell_delay = [
        applied[op.args["tag"]] - op.wall_end
        for op in history.ops
        if op.kind in ("tell", "relay") and op.status == "acked" and op.args["tag"] in applied
    ]
    rang = {
        name: when
        for key, names in state["rings"].items()
        for name, when in zip(names, state["ring_at"][key], strict=False)
    }
    lateness = [
        rang[op.args["name"]] - (op.wall_end + op.args["due_in"])
        for op in history.ops
        if op.kind == "arm" and op.status == "acked" and op.args["name"] in rang
    ]
    report.latency = {
        "tell_applied_after_ack_s": _spread(tell_delay),
        "reminder_late_by_s": _spread(lateness),
        "silo_exit_codes": dict(Counter(str(e.code) for e in cluster.exits)),
        "clients": clients.summaries,
    }
    slow = sum(1 for d in tell_delay if d > 30)
    if slow:
        report.anomalies.append(f"{slow} tells applied more than 30 s after their 202")


def split_conflicts(
    conflicts: list[dict[str, Any]], cluster: ChaosCluster, wall0: float, t0: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Witness conflicts in two: those with a silo that was declared dead and had not yet
    stopped (a known runtime bug, pinned by tests/chaos/test_zombies.py: a thawed or
    reconnected silo starts its queued turns before it learns it is dead), and the rest,
    which are single-activation violations. A zombie's lock outlives it by its TTL."""
    linger = LOCK_TTL_MS / 1000 + 0.5
    dead_until: dict[int, float] = {}  # pid -> until when its locks may linger (wall clock)
    for silo in cluster.gone:
        if silo.exit_code == 3 and silo.exited is not None and silo.process.proc is not None:
            dead_until[silo.pid] = wall0 + (silo.exited - t0) + linger
    zombie, double = [], []
    for conflict in conflicts:
        pids = {int(str(conflict[who] or "0:").split(":")[0]) for who in ("taker", "holder")}
        if any(conflict["at"] <= dead_until.get(pid, -1.0) for pid in pids):
            zombie.append(conflict)
        else:
            double.append(conflict)
    return zombie, double


def render(report: Report) -> str:
    c = report.config
    lines = [
        f"chaos report: seed {c['seed']}, {c['duration']:.0f}s of faults "
        f"({c['before']:.0f}s before, {c['after']:.0f}s after), {report.elapsed:.0f}s in all",
        "faults:      "
        + ", ".join(f"{k} {n}" for k, n in report.faults_by_kind.items())
        + f"  (total {sum(report.faults_by_kind.values())})",
    ]
    for kind, tally in report.operations.items():
        lines.append(f"ops {kind:<8} " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    lines.append(f"violations:  {len(report.violations)}")
    lines += [f"  {v}" for v in report.violations[:50]]
    w = report.witness
    lines.append(
        f"witness:     {w.get('turns', 0)} turns watched, {w.get('conflicts', 0)} conflicts, "
        f"{w.get('stale_own_lock', 0)} own stale locks; fenced writes rejected: "
        f"{report.fenced_writes}"
    )

    def spread(d: dict[str, Any]) -> str:
        return f"median {d['median']}s max {d['max']}s (n={d['n']})" if d.get("n") else "-"

    for kind, d in report.detection.items():
        lines.append(f"detection   {kind:<8} {spread(d)}")
    for kind, d in report.recovery.items():
        if isinstance(d, dict):
            lines.append(f"recovery    {kind:<8} {spread(d)}")
    lines.append(
        f"recovery    not before the next fault: {report.recovery.get('not_before_next_fault')}"
    )
    t = report.throughput
    lines.append(
        f"throughput:  before {t.get('before')} ops/s, during {t.get('during')} ops/s, "
        f"after {t.get('after')} ops/s"
    )
    lat = report.latency
    lines.append(
        f"tells:       applied after 202: {spread(lat.get('tell_applied_after_ack_s', {}))}"
    )
    lines.append(f"reminders:   late by: {spread(lat.get('reminder_late_by_s', {}))}")
    lines.append(f"silo exits:  {lat.get('silo_exit_codes')}")
    lines.append(f"known bugs:  {len(report.known)}")
    lines += [f"  {k}" for k in report.known]
    lines.append(f"anomalies:   {len(report.anomalies)}")
    lines += [f"  {a}" for a in report.anomalies]
    lines.append("RESULT: " + ("PASS" if report.ok else "FAIL") + f" (seed {c['seed']})")
    return "\n".join(lines)
