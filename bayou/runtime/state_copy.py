"""Copy-on-write of an actor's state: the private copy each exclusive turn works on.

A turn runs on a copy of the committed state, so a handler that fails (or whose commit
fails) leaves the committed state untouched. A deep copy is the safe default. A shallow
copy (new object, new ``__dict__``, the same field values) is as safe when every field
value is immutable: the handler can then only rebind fields of its copy, never change a
value the committed state shares. Whether a model *can* be copied shallowly is decided
once per class, from its field annotations; every turn then still checks that the values
actually held are of immutable types (a handler may have stored, say, a list in a field
annotated ``tuple``), and deep-copies when one is not.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel

_ATOMIC: frozenset[type] = frozenset(
    {int, float, bool, str, bytes, complex, type(None), Decimal, UUID}
    | {dt.date, dt.datetime, dt.time, dt.timedelta, dt.timezone}
)
_shallow_models: dict[type[BaseModel], bool] = {}
_M = TypeVar("_M", bound=BaseModel)


def working_copy(state: _M) -> _M:
    """The private copy of ``state`` a turn works on (shallow when that is as safe)."""
    cls = type(state)
    shallow = _shallow_models.get(cls)
    if shallow is None:
        shallow = _shallow_models[cls] = _immutable_model(cls, set())
    if shallow and _immutable_values(state):
        # What ``model_copy()`` does, without its generality (about half its cost).
        copy = cls.__new__(cls)
        _set(copy, "__dict__", state.__dict__.copy())
        _set(copy, "__pydantic_fields_set__", state.__pydantic_fields_set__.copy())
        _set(copy, "__pydantic_extra__", state.__pydantic_extra__)  # None: no extras allowed
        _set(copy, "__pydantic_private__", state.__pydantic_private__)  # None: no private
        return copy
    return state.model_copy(deep=True)


_set = object.__setattr__


def _immutable_model(cls: type[BaseModel], seen: set[type]) -> bool:
    """Whether every field of ``cls`` is annotated with an immutable type, and the model
    keeps nothing beside its fields (no private attributes, no extra fields)."""
    if cls.__private_attributes__ or cls.model_config.get("extra") == "allow":
        return False
    if cls in seen:
        return False  # recursive models: not worth proving
    seen = seen | {cls}
    return all(_immutable_type(f.annotation, seen) for f in cls.model_fields.values())


def _immutable_type(tp: Any, seen: set[type]) -> bool:
    if tp in _ATOMIC:
        return True
    origin = get_origin(tp)
    if origin is Annotated:
        return _immutable_type(get_args(tp)[0], seen)
    if origin is Literal:
        return all(type(v) in _ATOMIC or isinstance(v, Enum) for v in get_args(tp))
    if origin in (Union, UnionType):
        return all(_immutable_type(arg, seen) for arg in get_args(tp))
    if origin in (tuple, frozenset):
        return all(arg is Ellipsis or _immutable_type(arg, seen) for arg in get_args(tp))
    if isinstance(tp, type):
        if issubclass(tp, Enum):
            return True
        if issubclass(tp, BaseModel):
            return bool(tp.model_config.get("frozen")) and _immutable_model(tp, seen)
    return False


def _immutable_values(state: BaseModel) -> bool:
    for value in state.__dict__.values():
        if type(value) not in _ATOMIC and not _immutable_value(value):
            return False
    return True


def _immutable_value(value: Any) -> bool:
    tp = type(value)
    if tp in _ATOMIC:
        return True
    if tp is tuple or tp is frozenset:
        return all(_immutable_value(v) for v in value)
    if isinstance(value, Enum):
        return True
    if isinstance(value, BaseModel):
        return bool(tp.model_config.get("frozen")) and _immutable_values(value)
    return False
