"""The private copy a turn works on: shallow where every field value is immutable, deep
otherwise, and in both cases the committed state never sees a failed turn's changes."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from bayou import Actor, App, actor
from bayou.errors import ActorError
from bayou.runtime.state_copy import _immutable_model, working_copy
from bayou.testing import local_silo


class Color(enum.Enum):
    RED = "red"


class Point(BaseModel):
    model_config = ConfigDict(frozen=True)
    x: int = 0
    y: int = 0


class Flat(BaseModel):
    n: int = 0
    name: str = ""
    ratio: float | None = None
    when: dt.datetime | None = None
    color: Color = Color.RED
    mode: Literal["a", "b"] = "a"
    tags: tuple[str, ...] = ()
    limited: Annotated[int, Field(ge=0)] = 0
    where: Point = Point()


class WithList(BaseModel):
    items: list[int] = []


class MutablePoint(BaseModel):
    x: int = 0


class WithMutableModel(BaseModel):
    point: MutablePoint = MutablePoint()


class WithPrivate(BaseModel):
    n: int = 0
    _cache: dict[str, int] = PrivateAttr(default_factory=dict)


class WithExtra(BaseModel):
    model_config = ConfigDict(extra="allow")
    n: int = 0


@pytest.mark.parametrize(
    ("model", "shallow"),
    [
        (Flat, True),
        (WithList, False),
        (WithMutableModel, False),
        (WithPrivate, False),
        (WithExtra, False),
    ],
)
def test_shallow_copy_is_decided_by_the_field_types(model: type[BaseModel], shallow: bool) -> None:
    assert _immutable_model(model, set()) is shallow


def test_a_shallow_copy_is_a_separate_equal_model() -> None:
    state = Flat(n=1, tags=("a",), where=Point(x=1))
    copy = working_copy(state)
    assert copy is not state and copy == state
    copy.n = 2
    copy.tags = ("a", "b")
    assert state.n == 1 and state.tags == ("a",)
    assert copy.model_fields_set == {"n", "tags", "where"}
    assert state.model_fields_set == {"n", "tags", "where"}
    assert copy.model_dump() == {**state.model_dump(), "n": 2, "tags": ("a", "b")}


def test_mutable_fields_are_copied_deeply() -> None:
    state = WithList(items=[1])
    copy = working_copy(state)
    copy.items.append(2)
    assert state.items == [1]


def test_a_mutable_value_in_an_immutable_field_is_copied_deeply() -> None:
    # Nothing validates assignments: a handler may have stored a list where a tuple goes.
    state = Flat.model_construct(tags=["a"])  # type: ignore[arg-type]
    copy = working_copy(state)
    copy.tags.append("b")  # type: ignore[attr-defined]
    assert state.__dict__["tags"] == ["a"]


class Counts(BaseModel):
    n: int = 0
    seen: tuple[int, ...] = ()


@actor("copy-counter")
class CopyCounter(Actor[Counts]):
    async def add(self, n: int, fail: bool = False) -> int:
        self.state.n += n
        self.state.seen = (*self.state.seen, n)
        if fail:
            raise ValueError("no")
        return self.state.n

    async def get(self) -> Counts:
        return self.state


async def test_a_failed_turn_leaves_the_committed_state_alone() -> None:
    async with local_silo(App([CopyCounter])) as silo:
        assert await silo.call("copy-counter", "a", "add", {"n": 1}) == 1
        with pytest.raises(ActorError):
            await silo.call("copy-counter", "a", "add", {"n": 5, "fail": True})
        assert await silo.call("copy-counter", "a", "add", {"n": 2}) == 3
        assert await silo.call("copy-counter", "a", "get", {}) == {"n": 3, "seen": [1, 2]}


class Item(BaseModel):
    name: str = ""
    tags: list[str] = []


class Nested(BaseModel):
    items: list[Item] = []
    index: dict[str, list[int]] = {}
    pairs: tuple[list[int], ...] = ()
    members: set[str] = set()
    frozen_points: list[Point] = []
    mutable_in_frozen: list[Point] = []
    color: Color = Color.RED
    odd: object = None


class Box:
    """Not plain data: copied by copy.deepcopy."""

    def __init__(self, content: list[int]) -> None:
        self.content = content

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Box) and other.content == self.content


def _mutables(value: object, found: dict[int, object]) -> dict[int, object]:
    """Every mutable object reachable from ``value``, by id (a frozen model of immutable
    values is not one)."""
    if isinstance(value, Point) and all(type(v) is int for v in value.__dict__.values()):
        return found
    if isinstance(value, BaseModel):
        found[id(value)] = value
        found[id(value.__dict__)] = value.__dict__
        for v in value.__dict__.values():
            _mutables(v, found)
        for v in (value.__pydantic_extra__ or {}).values():
            _mutables(v, found)
    elif isinstance(value, Box):
        found[id(value)] = value
        _mutables(value.content, found)
    elif isinstance(value, (list, dict, set)):
        found[id(value)] = value
        for v in value.values() if isinstance(value, dict) else value:
            _mutables(v, found)
    elif isinstance(value, tuple):
        for v in value:
            _mutables(v, found)
    return found


def test_a_deep_copy_equals_the_state_and_shares_nothing_mutable_with_it() -> None:
    state = Nested(
        items=[Item(name=f"i{n}", tags=["t"]) for n in range(5)],
        index={"a": [1, 2], "b": []},
        pairs=([1], [2, 3]),
        members={"x", "y"},
        frozen_points=[Point(x=1)],
        mutable_in_frozen=[Point.model_construct(x=[1])],  # type: ignore[arg-type]
        odd=Box([7]),
    )
    copy = working_copy(state)
    assert copy == state == state.model_copy(deep=True)
    assert copy.model_fields_set == state.model_fields_set
    shared = set(_mutables(copy, {})) & set(_mutables(state, {}))
    assert not shared, [_mutables(state, {})[i] for i in shared]
    # Immutable values (a frozen model of immutable values, an enum) are shared as they are.
    assert copy.frozen_points[0] is state.frozen_points[0]
    assert copy.mutable_in_frozen[0] is not state.mutable_in_frozen[0]
    copy.items[0].tags.append("changed")
    copy.index["a"].append(3)
    copy.pairs[0].append(9)
    assert state.items[0].tags == ["t"] and state.index["a"] == [1, 2] and state.pairs[0] == [1]


def test_extras_and_private_attributes_are_copied_too() -> None:
    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")
        _seen: list[int] = PrivateAttr(default_factory=list)
        n: list[int] = []

    state = Loose(n=[1], more=[2])
    state._seen.append(3)
    copy = working_copy(state)
    assert copy == state and copy._seen == [3] and copy.__pydantic_extra__ == {"more": [2]}
    copy._seen.append(4)
    copy.__pydantic_extra__["more"].append(5)
    assert state._seen == [3] and state.__pydantic_extra__ == {"more": [2]}


def test_a_cycle_falls_back_to_the_general_deep_copy() -> None:
    loop: list[object] = []
    loop.append(loop)
    state = Nested.model_construct(odd=loop)
    copy = working_copy(state)
    assert copy.odd is not loop and copy.odd[0] is copy.odd  # type: ignore[index]
