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
from collections.abc import Callable
from copy import deepcopy
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
    if shallow:
        values = state.__dict__
        for value in values.values():  # _immutable_values, inline: this runs every turn
            if type(value) not in _ATOMIC and not _immutable_value(value):
                break
        else:
            # What ``model_copy()`` does, without its generality (about half its cost).
            copy = _new(cls)
            _set_dict(copy, values.copy())
            _set_fields_set(copy, state.__pydantic_fields_set__.copy())
            _set_extra(copy, None)  # a shallow-copyable model allows no extras
            _set_private(copy, None)  # ... and has no private attributes
            return copy
    try:
        copied: _M = _copy_model(state)
        return copied
    except RecursionError:  # a cycle, or nesting too deep to walk: the general machinery
        return state.model_copy(deep=True)


_set = object.__setattr__


# -- the deep copy -------------------------------------------------------------------------
#
# ``model_copy(deep=True)`` is ``copy.deepcopy``: general, and slow on the shapes states
# usually have (a list of ten thousand small models took 46 ms per turn). The copy below
# walks plain data by its runtime type (immutable values are shared, lists, dicts, sets
# and models are rebuilt) and hands anything else to ``copy.deepcopy``. It does not keep
# aliasing between two fields (one list referenced twice becomes two lists): a snapshot
# does not keep it either, so no handler could rely on it surviving a restart.


def _copy_model(model: BaseModel) -> Any:
    cls = type(model)
    copy = _new(cls)
    fields = model.__dict__.copy()
    atomic = _ATOMIC
    for name, value in fields.items():
        if type(value) not in atomic:
            fields[name] = _copy(value)
    _set_dict(copy, fields)
    _set_fields_set(copy, set(model.__pydantic_fields_set__))
    extra = model.__pydantic_extra__
    _set_extra(copy, None if extra is None else _copy(extra))
    private = model.__pydantic_private__
    _set_private(copy, None if private is None else deepcopy(private))
    return copy


# The slots every pydantic model has, set through their descriptors: what
# ``object.__setattr__`` would do, without looking the attribute up each time.
_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _copy(value: Any) -> Any:
    tp = type(value)
    copier = _COPIERS.get(tp)
    if copier is None:
        copier = _COPIERS[tp] = _copier_for(tp)
    return copier(value)


def _copy_list(value: list[Any]) -> list[Any]:
    atomic = _ATOMIC
    return [v if type(v) in atomic else _copy(v) for v in value]


def _copy_dict(value: dict[Any, Any]) -> dict[Any, Any]:
    atomic = _ATOMIC
    return {k: v if type(v) in atomic else _copy(v) for k, v in value.items()}


def _copy_tuple(value: tuple[Any, ...]) -> tuple[Any, ...]:
    return value if _immutable_value(value) else tuple(_copy(v) for v in value)


def _copy_set(value: set[Any]) -> set[Any]:
    return set(value) if all(type(v) in _ATOMIC for v in value) else deepcopy(value)


def _copy_frozenset(value: frozenset[Any]) -> frozenset[Any]:
    return value if all(type(v) in _ATOMIC for v in value) else deepcopy(value)


def _copy_frozen_model(value: BaseModel) -> Any:
    return value if _immutable_values(value) else _copy_model(value)


def _share(value: Any) -> Any:
    return value


def _copier_for(tp: type) -> Callable[[Any], Any]:
    if issubclass(tp, BaseModel):
        return _copy_frozen_model if tp.model_config.get("frozen") else _copy_model
    if issubclass(tp, Enum):
        return _share
    return deepcopy


# By exact runtime type (a subclass of list is not a list here: deepcopy knows it better).
_COPIERS: dict[type, Callable[[Any], Any]] = {
    **dict.fromkeys(_ATOMIC, _share),
    list: _copy_list,
    dict: _copy_dict,
    tuple: _copy_tuple,
    set: _copy_set,
    frozenset: _copy_frozenset,
}


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
