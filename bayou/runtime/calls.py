"""Calls from one actor to another: journaled as steps, exactly-once by derived keys.

A call made inside a handler records the callee's reply (or terminal error) as a step of
the caller's invocation, so a replay never sends it again. The call carries an idempotency
key derived from the caller's invocation id and step index, so a re-send after a crash is
answered from the callee's record instead of being applied twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bayou.errors import RETRYABLE, BayouError, DeadlockError
from bayou.model import ActorBase, spec_of
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
        _, handler = self._silo.resolve(self.type_name, method)

        async def invoke(*args: Any, **kwargs: Any) -> Any:
            if len(args) > len(handler.params):
                raise TypeError(f"{self.type_name}.{method} takes {len(handler.params)} arguments")
            named = dict(zip(handler.params, args, strict=False)) | kwargs
            plain = handler.args_model.model_validate(named).model_dump(mode="json")
            return await self._call(method, plain, query=handler.kind == "query")

        return invoke

    async def _call(self, method: str, args: dict[str, Any], *, query: bool) -> Any:
        ctx = self._ctx
        if (self.type_name, self.key) == (ctx.actor_type, ctx.key) and not query:
            raise DeadlockError(
                f"{ctx.actor_type}/{ctx.key} calls itself ({method}) from an exclusive turn; "
                "that call would wait for the turn that makes it"
            )
        name = f"{self.type_name}/{self.key}.{method}"
        step = ctx._next_recorded("call", name)
        if step is not None:
            return Outcome(step[2], step[3]).unwrap()
        if ctx.mode == "query":
            return await self._silo.call(self.type_name, self.key, method, args)
        idempotency_key = None if query else f"{ctx.invocation_id}:{ctx.cursor}"
        try:
            reply = await self._silo.call(
                self.type_name, self.key, method, args, idempotency_key=idempotency_key
            )
            outcome = Outcome(reply=reply)
        except RETRYABLE:
            raise  # not an answer: the caller's invocation fails unrecorded and can be retried
        except BayouError as exc:
            outcome = Outcome.failed(exc)
        ctx._record(["call", name, outcome.reply, outcome.error])
        await ctx.activation.persist_steps(ctx)
        return outcome.unwrap()
