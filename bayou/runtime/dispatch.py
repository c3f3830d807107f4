"""Shared steps of every call: find the handler, validate the arguments, wait for the reply."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from bayou import codec
from bayou.errors import CallTimeout, InvalidArguments, UnknownActorType, UnknownMethod
from bayou.model import ActorSpec, HandlerSpec
from bayou.runtime.app import App


def resolve(app: App, type_name: str, method: str) -> tuple[ActorSpec, HandlerSpec]:
    """The actor type and handler a call names; 404-class errors list what exists."""
    spec = app.spec(type_name)
    if spec is None:
        raise UnknownActorType(
            f"no actor type {type_name!r} on this silo", {"known": sorted(app.actors)}
        )
    handler = spec.handlers.get(method)
    if handler is None:
        raise UnknownMethod(
            f"actor type {type_name!r} has no handler {method!r}",
            {"known": sorted(spec.handlers)},
        )
    return spec, handler


def validate(spec: ActorSpec, handler: HandlerSpec, args: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments validated against the handler's type hints, or InvalidArguments.

    Arguments must also fit the journal (msgpack): an integer beyond 64 bits or a string
    with a lone surrogate is refused here, naming the field, rather than failing at commit.
    """
    for name, value in args.items():
        try:
            codec.pack(value)
        except (OverflowError, UnicodeEncodeError, TypeError, ValueError) as exc:
            raise InvalidArguments(
                f"invalid arguments for {spec.type_name}.{handler.name}: {name}: cannot be "
                f"recorded ({type(exc).__name__}: {exc})",
                [{"field": str(name), "message": f"cannot be recorded: {exc}"}],
            ) from None
    try:
        return handler.validate_args(args)
    except ValidationError as exc:
        problems = [
            {
                "field": ".".join(str(part) for part in err["loc"]) or "(body)",
                "message": err["msg"],
            }
            for err in exc.errors(include_url=False)
        ]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidArguments(
            f"invalid arguments for {spec.type_name}.{handler.name}: {summary}", problems
        ) from None


async def until(fut: asyncio.Future[Any], deadline: float) -> Any:
    """Wait for ``fut`` until ``deadline`` without cancelling it: a turn, once queued or
    started, runs to its commit even when its caller gave up (a retry finds its record).

    One plain waiter, woken by ``fut`` or by a timer: no task, no shield, no wait_for on
    the path every call takes."""
    if fut.done():
        return fut.result()
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    fut.add_done_callback(wake)
    timer = loop.call_at(deadline, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        fut.remove_done_callback(wake)
        if not fut.done():
            # Nobody waits for it any more (the deadline passed, or the caller was
            # cancelled): its outcome is consumed here, not logged as never retrieved.
            fut.add_done_callback(_consume)
    if fut.done():
        return fut.result()
    raise CallTimeout("no reply before the deadline; the call may still complete")


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
