"""The checker: the workload histories against the actors' final state, trusting no runtime.

An operation counts as *acknowledged* if it answered ``ok``, or if it was ``unknown`` and
its resolution (the same call resent with the same idempotency key) answered ``ok``; its
interval then runs from its start to the end of that resolution. A ``definite`` error must
have had no effect. An operation still unknown after resolution may have taken effect at
most once.

Checks (each failure is a ``Violation``):

- counters: the final value is the sum of the acknowledged adds (exactly, when nothing is
  left unknown); no two acknowledged adds returned the same value; an add that ended before
  another began returned the smaller value; every read lies between the adds acknowledged
  before it began and the adds begun before it ended;
- sequences (a linearizability check per key): the final list has no duplicates and
  nothing nobody appended; every acknowledged append is in it once, at the position its
  reply gave; appends that did not overlap appear in real-time order; every read is a
  prefix of the final list holding every append acknowledged before the read began;
- tells (from clients, and from an actor's handler): every accepted one applied exactly
  once, to the actor it was sent to; a refused one never;
- reminders: every acknowledged one rang exactly once, and not before it was due;
- workflows: every accepted run finished exactly once.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INFINITY = math.inf
RING_EARLY_SLACK = 0.05  # seconds: the clock the reminder reads is the one the client read


@dataclass(frozen=True)
class Violation:
    check: str
    key: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.key}: {self.detail}"


@dataclass
class Op:
    """One operation after resolution."""

    id: str
    kind: str
    type: str
    key: str
    args: dict[str, Any]
    start: float
    end: float  # INFINITY while unknown
    status: str  # acked, failed, unknown
    result: Any = None
    wall_start: float = 0.0
    wall_end: float = 0.0
    first_outcome: str = ""
    error: str = ""


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    by_id: dict[str, Op] = field(default_factory=dict)

    def of(self, kind: str) -> list[Op]:
        return [op for op in self.ops if op.kind == kind]

    def outcomes(self) -> Counter[str]:
        """First outcomes (ok / error / unknown) and, for the unknown, how they resolved."""
        tally: Counter[str] = Counter()
        for op in self.ops:
            tally[op.first_outcome] += 1
            if op.first_outcome == "unknown" and op.kind not in ("get", "read"):
                tally[f"unknown->{op.status}"] += 1
        return tally


def load_history(lines: Iterable[dict[str, Any]]) -> History:
    history = History()
    resolutions: dict[str, dict[str, Any]] = {}
    for line in lines:
        if "resolve" in line:
            resolutions[line["resolve"]] = line
            continue
        outcome = line["outcome"]
        op = Op(
            id=line["op"],
            kind=line["kind"],
            type=line["type"],
            key=line["key"],
            args=line["args"],
            start=line["start"],
            end=line["end"] if outcome != "unknown" else INFINITY,
            status={"ok": "acked", "error": "failed"}.get(outcome, "unknown"),
            result=line.get("result"),
            wall_start=line.get("wall_start", 0.0),
            wall_end=line.get("wall_end", 0.0),
            first_outcome=outcome,
            error=line.get("error", ""),
        )
        history.ops.append(op)
        history.by_id[op.id] = op
    for op_id, line in resolutions.items():
        unknown = history.by_id.get(op_id)
        if unknown is None or unknown.status != "unknown":
            continue
        if line["outcome"] == "ok":
            unknown.status, unknown.result, unknown.end = "acked", line.get("result"), line["end"]
            unknown.wall_end = line.get("wall_end", unknown.wall_end)
        elif line["outcome"] == "error":
            # A resend refused for good (say 409) says nothing about the first attempt.
            unknown.error = line.get("error", "")
    return history


def read_histories(paths: Iterable[Path]) -> History:
    lines: list[dict[str, Any]] = []
    for path in paths:
        with path.open() as f:
            lines.extend(json.loads(raw) for raw in f if raw.strip())
    return load_history(lines)


def _by_key(ops: Iterable[Op]) -> dict[str, list[Op]]:
    grouped: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        grouped[op.key].append(op)
    return grouped


def _real_time_order(ops: list[tuple[Any, Op]], check: str, key: str) -> list[Violation]:
    """``ops`` sorted by their place in the outcome (a value, a position): an operation must
    not have ended before an operation placed earlier than it even began."""
    found = []
    latest_start, latest = -INFINITY, None
    for _, op in ops:
        if latest is not None and op.end < latest_start:
            found.append(
                Violation(
                    check,
                    key,
                    f"{op.id} ended before {latest.id} began, yet is ordered after it",
                )
            )
        if op.start > latest_start:
            latest_start, latest = op.start, op
    return found


# -- counters ----------------------------------------------------------------------------------


def check_counters(history: History, finals: dict[str, int]) -> list[Violation]:
    found: list[Violation] = []
    adds, gets = _by_key(history.of("add")), _by_key(history.of("get"))
    for key in sorted(set(adds) | set(gets) | set(finals)):
        ops = adds.get(key, [])
        final = finals.get(key, 0)
        acked = [op for op in ops if op.status == "acked"]
        unknown = [op for op in ops if op.status == "unknown"]
        low = sum(op.args["n"] for op in acked)
        high = low + sum(op.args["n"] for op in unknown)
        if not low <= final <= high:
            what = f"{low}" if low == high else f"between {low} and {high}"
            found.append(Violation("counter", key, f"final value {final}, expected {what}"))
        values = Counter(op.result for op in acked)
        for value, times in values.items():
            if times > 1:
                found.append(Violation("counter", key, f"{times} adds returned {value}"))
        for op in acked:
            if not isinstance(op.result, int) or op.result > final:
                found.append(
                    Violation("counter", key, f"{op.id} returned {op.result}, final {final}")
                )
        ordered = sorted(((op.result, op) for op in acked), key=lambda pair: pair[0])
        found += _real_time_order(ordered, "counter-order", key)
        for read in gets.get(key, []):
            if read.status != "acked":
                continue
            before = sum(op.args["n"] for op in acked if op.end < read.start)
            begun = sum(op.args["n"] for op in ops if op.start < read.end and op.status != "failed")
            if not before <= read.result <= begun:
                found.append(
                    Violation(
                        "counter-read",
                        key,
                        f"{read.id} read {read.result}; adds acknowledged before it total "
                        f"{before}, adds begun before its end {begun}",
                    )
                )
    return found


# -- sequences ----------------------------------------------------------------------------------


def check_sequences(history: History, finals: dict[str, list[str]]) -> list[Violation]:
    found: list[Violation] = []
    appends, reads = _by_key(history.of("append")), _by_key(history.of("read"))
    for key in sorted(set(appends) | set(reads) | set(finals)):
        final = finals.get(key, [])
        ops = {op.args["value"]: op for op in appends.get(key, [])}
        position: dict[str, int] = {}
        for index, value in enumerate(final):
            if value in position:
                found.append(Violation("sequence", key, f"{value} appears twice"))
            position.setdefault(value, index)
            if value not in ops:
                found.append(Violation("sequence", key, f"{value} was never appended here"))
        placed = []
        for value, op in ops.items():
            if op.status == "acked":
                if value not in position:
                    found.append(Violation("sequence", key, f"acknowledged {value} is missing"))
                    continue
                if op.result != position[value] + 1:
                    found.append(
                        Violation(
                            "sequence",
                            key,
                            f"{value} was acknowledged at position {op.result} "
                            f"but is at {position[value] + 1}",
                        )
                    )
            elif op.status == "failed" and value in position:
                found.append(Violation("sequence", key, f"refused {value} was applied"))
            if value in position:
                placed.append((position[value], op))
        placed.sort(key=lambda pair: pair[0])
        found += _real_time_order(placed, "sequence-order", key)
        acked_by = sorted(
            (op.end, position.get(v, -1), v) for v, op in ops.items() if op.status == "acked"
        )
        begun = sorted((op.start, position[v], v) for v, op in ops.items() if v in position)
        acked_ends = [end for end, _, _ in acked_by]
        begun_starts = [start for start, _, _ in begun]
        done = [r for r in reads.get(key, []) if r.status == "acked"]
        prefixes = prefix_digests(final, {digest_of(r.result)["n"] for r in done})
        for read in done:
            seen = digest_of(read.result)
            if prefixes.get(seen["n"]) != seen["sha1"]:
                found.append(
                    Violation("sequence-read", key, f"{read.id} read a list that is not a prefix")
                )
                continue
            # Every append acknowledged before the read began is in it (below its length)...
            before = acked_by[: bisect.bisect_left(acked_ends, read.start)]
            missed = [value for _, place, value in before if not 0 <= place < seen["n"]]
            if missed:
                found.append(
                    Violation(
                        "sequence-read",
                        key,
                        f"{read.id} missed {len(missed)} values acknowledged before the read "
                        f"began, {missed[0]} first",
                    )
                )
            # ...and none that began after the read ended is.
            after = begun[bisect.bisect_right(begun_starts, read.end) :]
            early = [value for _, place, value in after if place < seen["n"]]
            if early:
                found.append(
                    Violation("sequence-read", key, f"{read.id} saw {early[0]} before it began")
                )
    return found


def digest_of(items: Any) -> dict[str, Any]:
    """What a read of a sequence is recorded as: its length and a digest of its items (the
    whole list would make a long run's history gigabytes). A list is digested here."""
    if isinstance(items, dict):
        return items
    digest = hashlib.sha1(usedforsecurity=False)
    for item in items:
        digest.update(str(item).encode() + b"\n")
    return {"n": len(items), "sha1": digest.hexdigest()}


def prefix_digests(items: list[str], lengths: set[int]) -> dict[int, str]:
    """``digest_of(items[:n])["sha1"]`` for each ``n`` in ``lengths``, in one pass."""
    digest = hashlib.sha1(usedforsecurity=False)
    found = {0: digest.hexdigest()} if 0 in lengths else {}
    for index, item in enumerate(items, 1):
        digest.update(str(item).encode() + b"\n")
        if index in lengths:
            found[index] = digest.hexdigest()
    return found


# -- tells, reminders, workflows ----------------------------------------------------------------


def _exactly_once(
    check: str,
    expected: dict[str, tuple[str, Op]],
    applied: dict[str, list[str]],
) -> list[Violation]:
    """``expected``: tag -> (the key it must reach, its operation); ``applied``: key -> tags."""
    found: list[Violation] = []
    where: dict[str, list[str]] = defaultdict(list)
    for key, tags in applied.items():
        for tag in tags:
            where[tag].append(key)
    for tag, keys in where.items():
        if len(keys) > 1:
            found.append(Violation(check, tag, f"applied {len(keys)} times (at {sorted(keys)})"))
        if tag not in expected:
            found.append(Violation(check, tag, f"applied at {keys[0]} but never sent"))
            continue
        target, op = expected[tag]
        if keys[0] != target:
            found.append(Violation(check, tag, f"applied at {keys[0]}, sent to {target}"))
        if op.status == "failed":
            found.append(Violation(check, tag, f"refused ({op.error}) yet applied"))
    for tag, (target, op) in expected.items():
        if op.status == "acked" and tag not in where:
            found.append(Violation(check, tag, f"accepted for {target} but never applied"))
    return found


def tells_expected(history: History) -> dict[str, tuple[str, Op]]:
    expected = {op.args["tag"]: (op.key, op) for op in history.of("tell")}
    expected |= {op.args["tag"]: (op.args["sink"], op) for op in history.of("relay")}
    return expected


def check_tells(history: History, sinks: dict[str, list[str]]) -> list[Violation]:
    return _exactly_once("tell", tells_expected(history), sinks)


def check_reminders(
    history: History, rings: dict[str, list[str]], at: dict[str, list[float]]
) -> list[Violation]:
    arms = {op.args["name"]: (op.key, op) for op in history.of("arm")}
    found = _exactly_once("reminder", arms, rings)
    for key, names in rings.items():
        for name, when in zip(names, at.get(key, []), strict=False):
            if name in arms:
                op = arms[name][1]
                due = op.wall_start + op.args["due_in"]
                if when < due - RING_EARLY_SLACK:
                    found.append(
                        Violation("reminder", name, f"rang {due - when:.2f}s before it was due")
                    )
    return found


def check_workflows(history: History, finished: dict[str, list[str]]) -> list[Violation]:
    runs = {op.args["run_id"]: (op.key, op) for op in history.of("flow")}
    return _exactly_once("workflow", runs, finished)


def pending_effects(history: History, state: dict[str, dict[str, Any]]) -> int:
    """How many acknowledged tells, reminders and runs have not shown up yet."""
    return len(pending_list(history, state))


def pending_list(history: History, state: dict[str, dict[str, Any]]) -> list[Op]:
    """The acknowledged tells, reminders and runs that have not shown up (yet)."""
    applied = {tag for tags in state["sinks"].values() for tag in tags}
    rung = {name for names in state["rings"].values() for name in names}
    done = {run for runs in state["flows"].values() for run in runs}
    missing = [
        op
        for tag, (_, op) in tells_expected(history).items()
        if op.status == "acked" and tag not in applied
    ]
    missing += [
        op for op in history.of("arm") if op.status == "acked" and op.args["name"] not in rung
    ]
    missing += [
        op for op in history.of("flow") if op.status == "acked" and op.args["run_id"] not in done
    ]
    return missing


def check_all(history: History, state: dict[str, dict[str, Any]]) -> list[Violation]:
    """Every check over the final ``state`` (see ``tests.chaos.run.read_state``)."""
    return [
        *check_counters(history, state["counters"]),
        *check_sequences(history, state["lists"]),
        *check_tells(history, state["sinks"]),
        *check_reminders(history, state["rings"], state["ring_at"]),
        *check_workflows(history, state["flows"]),
    ]
