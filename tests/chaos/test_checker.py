"""The checker catches what it claims to: each kind of violation, on made-up histories."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.checker import (
    History,
    check_all,
    check_counters,
    check_reminders,
    check_sequences,
    check_tells,
    check_workflows,
    load_history,
    pending_effects,
)


def op(
    op_id: str,
    kind: str,
    key: str,
    args: dict[str, Any],
    start: float,
    end: float,
    outcome: str = "ok",
    result: Any = None,
    type_name: str = "t",
) -> dict[str, Any]:
    return {
        "op": op_id,
        "kind": kind,
        "type": type_name,
        "key": key,
        "args": args,
        "start": start,
        "end": end,
        "outcome": outcome,
        "result": result,
        "wall_start": 1000 + start,
        "wall_end": 1000 + end,
    }


def resolve(op_id: str, outcome: str, end: float, result: Any = None) -> dict[str, Any]:
    return {"resolve": op_id, "outcome": outcome, "result": result, "end": end}


def checks(history: History, **state: Any) -> list[str]:
    full: dict[str, Any] = {
        "counters": {},
        "lists": {},
        "sinks": {},
        "rings": {},
        "ring_at": {},
        "flows": {},
    } | state
    return [v.check for v in check_all(history, full)]


# -- counters ----------------------------------------------------------------------------------

ADDS = [
    op("a1", "add", "k", {"n": 2}, 0, 1, result=2),
    op("a2", "add", "k", {"n": 3}, 2, 3, result=5),
]


def test_a_correct_counter_history_passes() -> None:
    history = load_history([*ADDS, op("g", "get", "k", {}, 1.5, 1.6, result=2)])
    assert check_counters(history, {"k": 5}) == []


@pytest.mark.parametrize("final", [2, 7, 10])
def test_a_lost_or_doubled_add_is_caught(final: int) -> None:
    assert {v.check for v in check_counters(load_history(ADDS), {"k": final})} == {"counter"}


def test_two_adds_answering_the_same_value_are_caught() -> None:
    history = load_history([ADDS[0], op("a2", "add", "k", {"n": 3}, 2, 3, result=2)])
    assert "counter" in [v.check for v in check_counters(history, {"k": 5})]


def test_adds_out_of_real_time_order_are_caught() -> None:
    history = load_history(
        [
            op("a1", "add", "k", {"n": 2}, 0, 1, result=5),
            op("a2", "add", "k", {"n": 3}, 2, 3, result=3),
        ]
    )
    assert [v.check for v in check_counters(history, {"k": 5})] == ["counter-order"]


@pytest.mark.parametrize("value", [0, 9])
def test_a_stale_or_phantom_read_is_caught(value: int) -> None:
    history = load_history([*ADDS, op("g", "get", "k", {}, 1.5, 1.6, result=value)])
    assert [v.check for v in check_counters(history, {"k": 5})] == ["counter-read"]


def test_an_unknown_add_may_or_may_not_count_but_a_resolved_one_must() -> None:
    unknown = [ADDS[0], op("u", "add", "k", {"n": 3}, 2, 3, outcome="unknown")]
    assert check_counters(load_history(unknown), {"k": 2}) == []
    assert check_counters(load_history(unknown), {"k": 5}) == []
    resolved = load_history([*unknown, resolve("u", "ok", 9, result=5)])
    assert {v.check for v in check_counters(resolved, {"k": 2})} == {"counter"}
    assert check_counters(resolved, {"k": 5}) == []


def test_a_refused_add_must_not_count() -> None:
    refused = load_history([ADDS[0], op("e", "add", "k", {"n": 3}, 2, 3, outcome="error")])
    assert check_counters(refused, {"k": 2}) == []
    assert [v.check for v in check_counters(refused, {"k": 5})] == ["counter"]


# -- sequences ----------------------------------------------------------------------------------


def appends(*specs: tuple[str, float, float, str, Any]) -> list[dict[str, Any]]:
    return [
        op(value, "append", "l", {"value": value}, start, end, outcome, result)
        for value, start, end, outcome, result in specs
    ]


SEQ = appends(("x", 0, 1, "ok", 1), ("y", 2, 3, "ok", 2), ("z", 2.5, 4, "ok", 3))


def test_a_linearizable_sequence_passes() -> None:
    reads = [op("r", "read", "l", {}, 3.5, 3.6, result=["x", "y"])]
    assert check_sequences(load_history([*SEQ, *reads]), {"l": ["x", "y", "z"]}) == []


@pytest.mark.parametrize(
    ("final", "expected"),
    [
        (["x", "y"], ["sequence"]),  # z lost
        (["x", "y", "z", "y"], ["sequence"]),  # y twice
        (["x", "y", "z", "w"], ["sequence"]),  # w never appended
        (["x", "z", "y"], ["sequence", "sequence"]),  # positions differ from the replies
    ],
)
def test_lost_duplicate_phantom_and_moved_values_are_caught(
    final: list[str], expected: list[str]
) -> None:
    assert [v.check for v in check_sequences(load_history(SEQ), {"l": final})] == expected


def test_appends_out_of_real_time_order_are_caught() -> None:
    history = load_history(appends(("x", 0, 1, "ok", 2), ("y", 2, 3, "ok", 1)))
    assert [v.check for v in check_sequences(history, {"l": ["y", "x"]})] == ["sequence-order"]


def test_overlapping_appends_may_land_in_either_order() -> None:
    history = load_history(appends(("x", 0, 3, "ok", 2), ("y", 1, 2, "ok", 1)))
    assert check_sequences(history, {"l": ["y", "x"]}) == []


@pytest.mark.parametrize(
    "seen",
    [["y"], ["x"], ["x", "z"]],  # not a prefix / misses y, acked before / not a prefix
)
def test_bad_reads_are_caught(seen: list[str]) -> None:
    history = load_history([*SEQ, op("r", "read", "l", {}, 3.5, 3.6, result=seen)])
    assert [v.check for v in check_sequences(history, {"l": ["x", "y", "z"]})] == ["sequence-read"]


def test_a_read_cannot_see_an_append_that_began_after_it() -> None:
    history = load_history([*SEQ, op("r", "read", "l", {}, 0.1, 0.2, result=["x", "y"])])
    assert "sequence-read" in [v.check for v in check_sequences(history, {"l": ["x", "y", "z"]})]


def test_unknown_appends_may_be_missing_and_refused_ones_must_be() -> None:
    history = load_history(
        [*SEQ, *appends(("u", 5, 6, "unknown", None), ("e", 5, 6, "error", None))]
    )
    assert check_sequences(history, {"l": ["x", "y", "z"]}) == []
    assert check_sequences(history, {"l": ["x", "y", "z", "u"]}) == []
    assert [v.check for v in check_sequences(history, {"l": ["x", "y", "z", "e"]})] == ["sequence"]


def test_an_unknown_append_cannot_land_before_what_was_done_before_it_began() -> None:
    history = load_history([*SEQ, *appends(("u", 5, 6, "unknown", None))])
    found = {v.check for v in check_sequences(history, {"l": ["u", "x", "y", "z"]})}
    assert found == {"sequence", "sequence-order"}  # moved positions, and u before x


# -- tells, reminders, workflows -----------------------------------------------------------------

TELLS = [
    op("t1", "tell", "s1", {"tag": "t1"}, 0, 1),
    op("t2", "relay", "r", {"tag": "t2", "sink": "s2"}, 0, 1),
    op("t3", "tell", "s1", {"tag": "t3"}, 0, 1, outcome="error"),
    op("t4", "tell", "s1", {"tag": "t4"}, 0, 1, outcome="unknown"),
]


def test_tells_applied_once_pass() -> None:
    assert check_tells(load_history(TELLS), {"s1": ["t1"], "s2": ["t2"]}) == []
    assert check_tells(load_history(TELLS), {"s1": ["t1", "t4"], "s2": ["t2"]}) == []


@pytest.mark.parametrize(
    "sinks",
    [
        {"s1": [], "s2": ["t2"]},  # t1 lost
        {"s1": ["t1", "t1"], "s2": ["t2"]},  # t1 twice
        {"s1": ["t1", "t2"], "s2": []},  # t2 at the wrong actor
        {"s1": ["t1", "t3"], "s2": ["t2"]},  # refused t3 applied
        {"s1": ["t1", "t9"], "s2": ["t2"]},  # never sent
    ],
)
def test_lost_doubled_misrouted_refused_and_phantom_tells_are_caught(
    sinks: dict[str, list[str]],
) -> None:
    assert check_tells(load_history(TELLS), sinks) != []


def test_reminders_ring_once_and_not_early() -> None:
    history = load_history([op("r1", "arm", "a", {"name": "r1", "due_in": 2.0}, 0, 1)])
    assert check_reminders(history, {"a": ["r1"]}, {"a": [1002.5]}) == []
    assert [v.check for v in check_reminders(history, {"a": ["r1"]}, {"a": [1001.0]})] == [
        "reminder"
    ]
    assert check_reminders(history, {"a": ["r1", "r1"]}, {"a": [1003, 1004]}) != []
    assert check_reminders(history, {"a": []}, {"a": []}) != []


def test_workflows_finish_once() -> None:
    history = load_history([op("f1", "flow", "f", {"run_id": "f1", "steps": 3}, 0, 1)])
    assert check_workflows(history, {"f": ["f1"]}) == []
    assert check_workflows(history, {"f": []}) != []
    assert check_workflows(history, {"f": ["f1", "f1"]}) != []


def test_pending_effects_counts_what_has_not_shown_up() -> None:
    history = load_history(
        [
            *TELLS,
            op("r1", "arm", "a", {"name": "r1", "due_in": 2.0}, 0, 1),
            op("f1", "flow", "f", {"run_id": "f1", "steps": 3}, 0, 1),
        ]
    )
    state: dict[str, Any] = {"sinks": {"s1": ["t1"]}, "rings": {}, "flows": {"f": ["f1"]}}
    assert pending_effects(history, state) == 2  # t2 and r1
    assert (
        checks(
            history,
            sinks={"s1": ["t1"], "s2": ["t2"]},
            rings={"a": ["r1"]},
            ring_at={"a": [1003.0]},
            flows={"f": ["f1"]},
        )
        == []
    )
