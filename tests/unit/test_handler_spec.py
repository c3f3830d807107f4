"""Handler argument validation and result dumping: the shortcuts around pydantic give
exactly what pydantic gives, and everything they do not cover still goes to pydantic."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from bayou import Actor, actor
from bayou.model import spec_of


class Nothing(BaseModel):
    pass


@actor("spec-probe")
class Probe(Actor[Nothing]):
    async def plain(self, n: int, s: str, b: bool, raw: bytes) -> int:
        return n

    async def defaults(self, n: int = 5) -> str:
        return "x"

    async def checked(self, n: int = Field(gt=0)) -> int:
        return n

    async def floats(self, x: float) -> float:
        return x

    async def anything(self, v: Any) -> Any:
        return v

    async def nothing(self) -> None:
        return None


HANDLERS = spec_of(Probe).handlers


def pydantic_args(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    handler = HANDLERS[name]
    model = handler.args_model.model_validate(raw)
    return {p: getattr(model, p) for p in handler.params}


@pytest.mark.parametrize(
    "raw",
    [
        {"n": 1, "s": "a", "b": True, "raw": b"x"},
        {"n": "2", "s": "a", "b": True, "raw": b"x"},  # coerced by pydantic
        {"n": True, "s": "a", "b": 1, "raw": b"x"},  # bool for int, int for bool
        {"n": 2**70, "s": "", "b": False, "raw": b""},
    ],
)
def test_plain_arguments_validate_as_pydantic_does(raw: dict[str, Any]) -> None:
    got = HANDLERS["plain"].validate_args(raw)
    assert got == pydantic_args("plain", raw)
    assert [type(v) for v in got.values()] == [
        type(v) for v in pydantic_args("plain", raw).values()
    ]


@pytest.mark.parametrize(
    "raw",
    [
        {"n": 1, "s": "a", "b": True},  # missing
        {"n": 1, "s": "a", "b": True, "raw": b"x", "extra": 1},  # unknown name
        {"m": 1, "s": "a", "b": True, "raw": b"x"},  # same count, another name
        {"n": [1], "s": "a", "b": True, "raw": b"x"},
    ],
)
def test_bad_arguments_are_refused_by_pydantic(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HANDLERS["plain"].validate_args(raw)


def test_constraints_are_checked_by_pydantic() -> None:
    assert HANDLERS["checked"].plain_args is None
    with pytest.raises(ValidationError):
        HANDLERS["checked"].validate_args({"n": -5})


def test_defaults_and_floats_go_to_pydantic() -> None:
    assert HANDLERS["defaults"].plain_args is not None
    assert HANDLERS["defaults"].validate_args({}) == {"n": 5}
    assert HANDLERS["floats"].plain_args is None
    assert HANDLERS["floats"].validate_args({"x": 1}) == {"x": 1.0}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("plain", 3),
        ("plain", True),  # a bool where an int is declared: pydantic decides
        ("defaults", "x"),
        ("floats", float("inf")),
        ("floats", 1.5),
        ("anything", {"a": [1, 2]}),
        ("anything", "s"),
        ("anything", None),
        ("nothing", None),
    ],
)
def test_results_dump_as_pydantic_does(name: str, value: Any) -> None:
    handler = HANDLERS[name]
    expected = handler.result_adapter.dump_python(value, mode="json", warnings="error")
    got = handler.dump_result(value)
    assert got == expected and type(got) is type(expected)
