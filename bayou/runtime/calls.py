"""Calls from one actor to another: journaled as steps, exactly-once by derived keys.

A call made inside a handler records the callee's reply (or terminal error) as a step of
the caller's invocation, so a replay never sends it again. The call carries an idempotency
key derived from the caller's invocation id and step index, so a re-send after a crash is
answered from the callee's record instead of being applied twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bayou.errors import RETRYABLE, BayouError, DeadlockError, InvalidArguments
from bayou.model import ActorBase, HandlerSpec, spec_of
from bayou.runtime.records import Outcome

if TYPE_CHECKING:
    from bayou.runtime.invocation import InvocationContext
    from bayou.runtime.silo import Silo


class ActorCalls:
    """Makes refs for handlers; ``self.ref(Type, key)`` ends up here."""

    def __init__(self, silo: Silo) -> None:
        self._silo = silo

    def ref(self, ctx: InvocationContext, actor_type: Any, key: str) -> InternalRef:
        if isinstance(actor_type, str):
            type_name = actor_type
        elif isinstance(actor_type, type) and issubclass(actor_type, ActorBase):
            type_name = spec_of(actor_type).type_name
        else:
            raise TypeError(f"ref() needs an actor class or a type name, got {actor_type!r}")
        return InternalRef(self._silo, ctx, type_name, key)


class InternalRef:
    """A reference to another actor, usable only inside the handler that made it."""

    def __init__(self, silo: Silo, ctx: InvocationContext, type_name: str, key: str) -> None:
        self._silo = silo
        self._ctx = ctx
        self.type_name = type_name
        self.key = key

    def __repr__(self) -> str:
        return f"<ref {self.type_name}/{self.key} from {self._ctx.actor_type}/{self._ctx.key}>"

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        spec, handler = self._silo.resolve(self.type_name, method)
        reenters = spec.may_reenter(handler)

        async def invoke(*args: Any, **kwargs: Any) -> Any:
            plain = _plain_args(self.type_name, handler, args, kwargs)
            return await self._call(method, plain, query=handler.kind == "query", reenters=reenters)

        return invoke

    @property
    def tell(self) -> InternalTells:
        """``self.ref(T, k).tell.method(...)``: a durable one-way message, sent after commit."""
        return InternalTells(self)

    async def _call(self, method: str, args: dict[str, Any], *, query: bool, reenters: bool) -> Any:
        ctx = self._ctx
        me = f"{ctx.actor_type}/{ctx.key}"
        target = f"{self.type_name}/{self.key}"
        # A query, or a workflow (it lets go of its turn while it waits), blocks nobody.
        holds_turn = ctx.mode != "query" and getattr(ctx, "workflow_run", None) is None
        chain = (*ctx.chain, me) if holds_turn else ctx.chain
        if not query and not reenters and target in chain:
            cycle = [*chain[chain.index(target) :], target]
            raise DeadlockError(
                f"call cycle {' -> '.join(cycle)}: {target} is waiting for this call, so it "
                f"could never run {method}",
                {"cycle": cycle},
            )
        name = f"{target}.{method}"
        step = ctx._next_recorded("call", name)
        if step is not None:
            return Outcome(step[2], step[3]).unwrap()
        if ctx.mode == "query":
            return await self._silo.call(self.type_name, self.key, method, args)
        # Unique per step; a rerun that took another path numbers its own calls apart.
        prefix = ctx.invocation_id if not ctx.rerun else f"{ctx.invocation_id}.{ctx.rerun}"
        idempotency_key = None if query else f"{prefix}:{ctx.cursor}"
        try:
            call = self._silo.call(
                self.type_name, self.key, method, args,
                idempotency_key=idempotency_key, chain=chain,
            )  # fmt: skip
            run = getattr(ctx, "workflow_run", None)
            if run is not None:  # a workflow lets its actor's other messages in meanwhile
                reply = await run.await_outside_turn(call)
            else:
                reply = await call
            outcome = Outcome(reply=reply)
        except RETRYABLE:
            raise  # not an answer: the caller's invocation fails unrecorded and can be retried
        except BayouError as exc:
            outcome = Outcome.failed(exc)
        ctx._record(["call", name, outcome.reply, outcome.error])
        await ctx.activation.persist_steps(ctx)
        return outcome.unwrap()


class InternalTells:
    """The tell side of an ``InternalRef``: each call queues a message in the invocation's
    outbox; it is sent, exactly once, only after the invocation commits."""

    def __init__(self, ref: InternalRef) -> None:
        self._ref = ref

    def __getattr__(self, method: str) -> Callable[..., None]:
        if method.startswith("_"):
            raise AttributeError(method)
        ref = self._ref
        _, handler = ref._silo.resolve(ref.type_name, method)
        if handler.kind == "query":
            raise TypeError(
                f"{ref.type_name}.{method} is a query; only exclusive handlers take tells"
            )

        def send(*args: Any, **kwargs: Any) -> None:
            plain = _plain_args(ref.type_name, handler, args, kwargs)
            ref._ctx.tell(ref.type_name, ref.key, method, plain)

        return send


def _plain_args(
    type_name: str, handler: HandlerSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Named, validated arguments as plain data (what the journal and the wire carry)."""
    if len(args) > len(handler.params):
        raise TypeError(f"{type_name}.{handler.name} takes {len(handler.params)} arguments")
    named = dict(zip(handler.params, args, strict=False)) | kwargs
    try:
        plain: dict[str, Any] = handler.args_model.model_validate(named).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidArguments(f"invalid arguments for {type_name}.{handler.name}: {exc}") from None
    return plain
