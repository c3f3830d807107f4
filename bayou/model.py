"""The programming model: ``@actor`` classes, their handlers, and the invocation context.

This module only *describes* actors (type names, handlers, argument validators); running
them is the runtime's job. The client imports it too, to type refs from actor classes.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from bayou.context import Context

S = TypeVar("S", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
A = TypeVar("A", bound="ActorBase")
W = TypeVar("W", bound="StatelessWorker")

HandlerKind = Literal["exclusive", "query", "workflow"]
# Which exclusive turns of one actor may interleave at their awaits (as Orleans offers):
# "none" (one turn at a time), "call_chain" (a call made, directly or not, by a turn of
# this actor that is waiting for it: A -> B -> A), "full" (any call).
Reentrancy = Literal["none", "call_chain", "full"]
REENTRANCY: tuple[Reentrancy, ...] = ("none", "call_chain", "full")

TYPE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_LIFECYCLE = frozenset({"on_activate", "on_deactivate"})
# POST /v1/actors/{type}/{key}/topics/{topic} sends to a topic: a handler of this name
# could not be told over HTTP (".../topics/tell" is the topic "tell").
_RESERVED = frozenset({"topics"})


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """What the runtime and the client need to know about one handler."""

    name: str
    kind: HandlerKind
    params: tuple[str, ...]
    args_model: type[BaseModel]
    result_adapter: TypeAdapter[Any]
    interleave: bool = False  # @always_interleave: may run while other turns wait
    # Shortcuts around pydantic for what it would hand back unchanged: every parameter
    # annotated with a plain scalar type (None if one is not), and the exact result types
    # that serialize as themselves.
    plain_args: tuple[tuple[str, type], ...] | None = None
    plain_results: frozenset[type] = frozenset()

    def validate_args(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validated keyword arguments; raises pydantic.ValidationError naming the fields."""
        plain = self.plain_args
        if plain is not None and len(raw) == len(plain):
            # Each value already of its parameter's exact type: pydantic would return it
            # as it is. Anything else (a coercion, a default, an error) goes to pydantic.
            try:
                if all(type(raw[name]) is tp for name, tp in plain):
                    return {name: raw[name] for name, _ in plain}
            except KeyError:
                pass
        model = self.args_model.model_validate(raw)
        return {name: getattr(model, name) for name in self.params}

    def dump_result(self, value: Any) -> Any:
        """The handler's return value as plain JSON-compatible data."""
        if type(value) in self.plain_results:
            return value
        return self.result_adapter.dump_python(value, mode="json", warnings="error")


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """A registered actor class: its wire type name, kind, state model and handlers."""

    type_name: str
    cls: type[ActorBase]
    state_model: type[BaseModel] | None
    handlers: Mapping[str, HandlerSpec]
    max_local_activations: int = 0  # > 0: a stateless worker with that many per silo
    reentrancy: Reentrancy = "none"

    @property
    def interleaves(self) -> bool:
        """Whether any two exclusive turns of this actor may ever run at once."""
        return self.reentrancy != "none" or any(h.interleave for h in self.handlers.values())

    def may_reenter(self, handler: HandlerSpec) -> bool:
        """Whether a call of ``handler`` that a waiting turn of this very actor made
        (directly or through others) may run now instead of deadlocking."""
        return handler.interleave or self.reentrancy != "none"

    @property
    def is_entity(self) -> bool:
        return issubclass(self.cls, Entity)

    @property
    def is_stateless(self) -> bool:
        return self.max_local_activations > 0


def workflow(fn: F) -> F:
    """Mark a handler as a durable workflow: it may ``await self.ctx.sleep(...)`` and
    ``await self.ctx.receive(topic)``, survives crashes and hand-offs by replaying its
    own steps, and lets the actor's other messages run while it waits."""
    fn.__bayou_workflow__ = True  # type: ignore[attr-defined]
    return fn


def always_interleave(fn: F) -> F:
    """Let an exclusive handler run even while other turns of its actor wait at an await
    (Orleans' ``[AlwaysInterleave]``). It is still journaled and still sees only committed
    state; turns that interleave commit one at a time, each as if it had run alone."""
    fn.__bayou_interleave__ = True  # type: ignore[attr-defined]
    return fn


def query(fn: F) -> F:
    """Mark a handler read-only: it may interleave with others and is not journaled."""
    fn.__bayou_query__ = True  # type: ignore[attr-defined]
    return fn


# The invocation running in this task, if any; set by the runtime around every handler call.
current_invocation: ContextVar[Context | None] = ContextVar("bayou_invocation", default=None)


class ActorBase:
    """What actors and entities share: a key, a context, refs and lifecycle hooks."""

    __bayou_spec__: ClassVar[ActorSpec]
    key: str
    _bayou_activation: Any  # the runtime's activation hosting this instance

    @property
    def ctx(self) -> Context:
        """The context of the invocation running now (only valid inside a handler)."""
        ctx = current_invocation.get()
        if ctx is None or ctx.target is not self:
            raise RuntimeError("ctx is only available inside a handler of this actor")
        return ctx

    def ref(self, actor_type: type[A] | str, key: str) -> Any:
        """A reference to another actor; calls through it are journaled steps."""
        return self.ctx.ref(actor_type, key)

    def set_timer(
        self,
        name: str,
        delay: float,
        method: str | Callable[..., Awaitable[Any]],
        *,
        period: float | None = None,
        **args: Any,
    ) -> None:
        """Run exclusive handler ``method(**args)`` as a turn after ``delay`` seconds (then
        every ``period`` seconds). In memory: the timer ends with the activation; use a
        reminder for wake-ups that must survive passivation and crashes. Setting a timer of
        the same name replaces it; replaying the journal does not set timers again."""
        ctx = current_invocation.get()
        if ctx is not None and ctx.target is self and ctx.replaying:
            return
        method_name = method if isinstance(method, str) else method.__name__
        self._timers().set(name, delay, method_name, args, period)

    def cancel_timer(self, name: str) -> bool:
        """Stop timer ``name``; False if there was none."""
        return bool(self._timers().cancel(name))

    def _timers(self) -> Any:
        activation = getattr(self, "_bayou_activation", None)
        if activation is None:
            raise RuntimeError("timers are available once the actor is activated")
        return activation.timers

    async def on_activate(self) -> None:
        """Called after the actor's state is loaded, before its first message."""

    async def on_deactivate(self) -> None:
        """Called before the actor is passivated or handed off, before its last snapshot."""


class Actor(ActorBase, Generic[S]):
    """A durable actor whose state is a pydantic model kept in memory.

    Exclusive handlers work on a private copy of the state that becomes the actor's state
    only once the invocation's journal record is durable; if the handler raises, the copy
    is dropped. Queries read the last committed state.
    """

    _committed: S

    @property
    def state(self) -> S:
        ctx = current_invocation.get()
        if ctx is not None and ctx.target is self and ctx.working_state is not None:
            return ctx.working_state  # type: ignore[return-value]
        return self._committed

    @state.setter
    def state(self, value: S) -> None:
        ctx = current_invocation.get()
        if ctx is None or ctx.target is not self or ctx.working_state is None:
            raise RuntimeError("state can only be replaced inside an exclusive handler")
        ctx.working_state = value


class Entity(ActorBase):
    """A durable object whose state lives in a per-key K/V store (``self.ctx.kv``).

    Nothing is held in memory and nothing is replayed: writes are committed atomically
    with the invocation's journal record, reads go to the store (cached per activation).
    """


def actor(type_name: str, *, reentrancy: Reentrancy = "none") -> Callable[[type[A]], type[A]]:
    """Register a class as the actor type ``type_name`` (the name used on the wire).

    ``reentrancy`` lets exclusive turns interleave at their awaits: ``"call_chain"`` admits
    calls that a waiting turn of this actor made itself (A -> B -> A, which would otherwise
    be a ``DeadlockError``), ``"full"`` admits any call (Orleans' ``[Reentrant]``). Tells
    still run one at a time, in order. Interleaving never loses an update: turns commit one
    at a time, and a turn under which another committed is run again on the new state,
    with the results of its side effects and calls as recorded, before it commits."""
    if not TYPE_NAME.match(type_name):
        raise ValueError(
            f"actor type name {type_name!r} must match {TYPE_NAME.pattern} "
            "(lowercase, digits, '_', '.', '-')"
        )
    if reentrancy not in REENTRANCY:
        raise ValueError(f"reentrancy must be one of {', '.join(REENTRANCY)}, not {reentrancy!r}")

    def register(cls: type[A]) -> type[A]:
        spec = describe(cls, type_name)
        if reentrancy != "none":
            if not issubclass(cls, (Actor, Entity)):
                raise TypeError(f"{cls.__qualname__}: only actors and entities are reentrant")
            spec = replace(spec, reentrancy=reentrancy)
        cls.__bayou_spec__ = spec
        return cls

    return register


class StatelessWorker(ActorBase):
    """An actor with no state and no journal, run by up to ``max_activations`` activations
    on every silo, always on the silo that received the call: for fan-out and pure work.

    Its handlers run like queries (nothing is recorded, so they may repeat on retry); they
    may call other actors. It takes calls only: with no inbox, it cannot be told."""


def stateless_worker(type_name: str, *, max_activations: int = 4) -> Callable[[type[W]], type[W]]:
    """Register a ``StatelessWorker`` subclass under ``type_name``."""
    if max_activations < 1:
        raise ValueError("a stateless worker needs max_activations >= 1")

    def register(cls: type[W]) -> type[W]:
        if not issubclass(cls, StatelessWorker):
            raise TypeError(f"@stateless_worker needs a subclass of StatelessWorker, got {cls!r}")
        spec = describe(cls, type_name)
        cls.__bayou_spec__ = replace(spec, max_local_activations=max_activations)
        return cls

    if not TYPE_NAME.match(type_name):
        raise ValueError(f"actor type name {type_name!r} must match {TYPE_NAME.pattern}")
    return register


def spec_of(cls: type[ActorBase]) -> ActorSpec:
    """The spec of a class decorated with ``@actor``; TypeError otherwise."""
    spec = cls.__dict__.get("__bayou_spec__")
    if not isinstance(spec, ActorSpec):
        raise TypeError(f"{cls.__qualname__} is not decorated with @actor")
    return spec


def describe(cls: type[ActorBase], type_name: str) -> ActorSpec:
    """Inspect an actor class: its state model and the spec of each public handler."""
    if not (isinstance(cls, type) and issubclass(cls, ActorBase)) or cls in (
        Actor,
        Entity,
        StatelessWorker,
    ):
        raise TypeError(f"@actor needs a subclass of bayou.Actor or bayou.Entity, got {cls!r}")
    state_model = _state_model(cls) if issubclass(cls, Actor) else None
    handlers: dict[str, HandlerSpec] = {}
    for name, fn in _public_methods(cls):
        handlers[name] = _handler_spec(cls, name, fn)
    return ActorSpec(type_name=type_name, cls=cls, state_model=state_model, handlers=handlers)


def _state_model(cls: type[ActorBase]) -> type[BaseModel]:
    for base in getattr(cls, "__orig_bases__", ()):
        origin = getattr(base, "__origin__", None)
        if isinstance(origin, type) and issubclass(origin, Actor):
            (arg,) = base.__args__
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
            raise TypeError(f"{cls.__qualname__}: Actor[...] needs a pydantic model, got {arg!r}")
    for base in cls.__mro__[1:]:
        spec = base.__dict__.get("__bayou_spec__")
        if isinstance(spec, ActorSpec) and spec.state_model is not None:
            return spec.state_model
    raise TypeError(f"{cls.__qualname__} must subclass Actor[StateModel]")


def _public_methods(cls: type[ActorBase]) -> list[tuple[str, Callable[..., Any]]]:
    found = []
    base_names = set(dir(Actor)) | set(dir(Entity))
    for name in dir(cls):
        if name.startswith("_") or name in _LIFECYCLE or name in base_names:
            continue
        fn = getattr(cls, name)
        if inspect.iscoroutinefunction(fn):
            found.append((name, fn))
    return found


def _handler_spec(cls: type[ActorBase], name: str, fn: Callable[..., Any]) -> HandlerSpec:
    if name in _RESERVED:
        raise TypeError(f"{cls.__qualname__}.{name}: {name!r} is a route of every actor "
                        "(.../topics/{topic}); give the handler another name")  # fmt: skip
    sig = inspect.signature(fn)
    try:
        hints = get_type_hints(fn, include_extras=True)  # keep Annotated[..., Field(...)]
    except Exception as exc:
        raise TypeError(f"{cls.__qualname__}.{name}: cannot resolve type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    params: list[str] = []
    for index, param in enumerate(sig.parameters.values()):
        if index == 0:
            continue  # self
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"{cls.__qualname__}.{name}: handlers take named parameters only "
                f"(*args, **kwargs and positional-only parameters cannot travel as JSON)"
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
        params.append(param.name)
    args_model = create_model(
        f"{cls.__name__}.{name}.args",
        # NaN and infinity are no JSON: a reply or state holding one could not be read back.
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False, allow_inf_nan=False),
        **fields,
    )
    result_adapter: TypeAdapter[Any] = TypeAdapter(hints.get("return", Any))
    kind: HandlerKind = "exclusive"
    if getattr(fn, "__bayou_query__", False):
        kind = "query"
    elif getattr(fn, "__bayou_workflow__", False):
        kind = "workflow"
    interleave = bool(getattr(fn, "__bayou_interleave__", False))
    if interleave and kind != "exclusive":
        raise TypeError(
            f"{cls.__qualname__}.{name}: @always_interleave is for exclusive handlers; "
            f"a {kind} already interleaves"
        )
    plain_args = tuple((p, fields[p][0]) for p in params)
    plain = all(
        tp in _PLAIN_ARGS and not isinstance(fields[p][1], FieldInfo)  # Field(gt=0): checks
        for p, tp in plain_args
    )
    return HandlerSpec(
        name=name,
        kind=kind,
        params=tuple(params),
        args_model=args_model,
        result_adapter=result_adapter,
        interleave=interleave,
        plain_args=plain_args if plain else None,
        plain_results=_plain_results(hints.get("return", Any)),
    )


# Parameter types whose values pydantic (lax mode, no constraints) returns unchanged when
# they are of exactly that type. float is left out: pydantic may hand back another object.
_PLAIN_ARGS = frozenset({int, str, bool, bytes})


def _plain_results(annotation: Any) -> frozenset[type]:
    """Result types that ``dump_python(mode="json")`` returns unchanged for ``annotation``
    (floats are left out: infinities and NaN serialize as None)."""
    if annotation is Any:
        return frozenset({int, str, bool, type(None)})
    if annotation is None or annotation is type(None):
        return frozenset({type(None)})
    if annotation in (int, str, bool):
        return frozenset({annotation})
    return frozenset()
