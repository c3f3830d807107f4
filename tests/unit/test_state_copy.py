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
