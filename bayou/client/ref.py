"""``ActorRef``: a typed-ish handle on one actor, so calls read like method calls.

    counter = client.ref(Counter, "alice")
    await counter.add(10)                       # call: waits for the result
    await counter.tell.add(10)                  # tell: returns the message id once stored
    await counter.options(idempotency_key="order-17", timeout=2.0).add(10)
    await counter.handler("key")()              # a handler named like a ref attribute

No I/O happens here: a ref only shapes arguments and hands them to its ``Client``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any

from bayou.client import protocol
from bayou.model import ActorSpec, HandlerSpec

_NO_DEFAULT: Any = object()

if TYPE_CHECKING:
    from bayou.client.client import Client


class ActorRef:
    """The actor ``key`` of type ``type_name``, reached through a ``Client``.

    Made by ``Client.ref``. Any public attribute that is not one of the ref's own
    (``type_name``, ``key``, ``tell``, ``options``, ``handler``, and the channel methods
    ``get_event``, ``read_stream``, ``send``, ``reminders``, ``set_reminder``,
    ``cancel_reminder``, ``workflow_runs``) is a handler:
    ``await ref.add(n=1)`` calls it and returns its result.

    * From an ``@actor`` class the handlers are known: an unknown name raises
      ``AttributeError`` on access, positional arguments are mapped to the handler's
      parameters in order, and too many of them raise ``TypeError`` before anything is sent.
    * From a type name only keyword arguments are accepted (nothing client-side knows the
      parameter order); positional ones raise ``TypeError``.

    Argument names and values are validated by the silo (``InvalidArguments``), which knows
    the deployed version of the actor.

    Per-call options travel on the ref: ``ref.options(idempotency_key=..., timeout=...)``
    returns a ref whose calls and tells carry them. An explicit idempotency key names one
    logical operation: use that ref for that operation only (reusing the key for other
    arguments raises ``IdempotencyKeyReused``). Without one, each call of an exclusive
    handler (or of any handler, from a type name) and each tell gets a fresh key that all
    its retries share; queries known from the class are sent without one.

    Refs are cheap, immutable and safe to share between tasks.
    """

    __slots__ = (
        "_client",
        "_handlers",
        "_idempotency_key",
        "_spec",
        "_tell",
        "_timeout",
        "key",
        "type_name",
    )

    def __init__(
        self,
        client: Client,
        type_name: str,
        key: str,
        spec: ActorSpec | None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self._client = client
        self.type_name = type_name
        self.key = key
        self._spec = spec
        self._idempotency_key = idempotency_key
        self._timeout = timeout
        # Bound handlers are built once per name: they hold precomputed paths.
        self._handlers: dict[str, BoundHandler] = {}
        self._tell: TellProxy | None = None

    def __repr__(self) -> str:
        options = ""
        if self._idempotency_key is not None:
            options += f", idempotency_key={self._idempotency_key!r}"
        if self._timeout is not None:
            options += f", timeout={self._timeout!r}"
        return f"ActorRef({self.type_name!r}, {self.key!r}{options})"

    def __getattr__(self, name: str) -> BoundHandler:
        # Only reached for names that are not attributes of the ref itself.
        if name.startswith("_"):
            raise AttributeError(name)
        return self.handler(name)

    @property
    def tell(self) -> TellProxy:
        """Tells instead of calls: ``await ref.tell.add(n=1)`` returns the message id."""
        if self._tell is None:
            self._tell = TellProxy(self)
        return self._tell

    def options(
        self, *, idempotency_key: str | None = None, timeout: float | None = None
    ) -> ActorRef:
        """A ref to the same actor whose calls and tells carry these options.

        ``idempotency_key`` makes the operation exactly-once across separate attempts by the
        caller too (a repeat returns the recorded reply). ``timeout`` is the deadline in
        seconds for each call, retries included. Options not given keep this ref's values.
        """
        protocol.validate_idempotency_key(idempotency_key)
        protocol.validate_timeout(timeout)
        return ActorRef(
            self._client,
            self.type_name,
            self.key,
            self._spec,
            idempotency_key=self._idempotency_key if idempotency_key is None else idempotency_key,
            timeout=self._timeout if timeout is None else timeout,
        )

    # -- events, streams, topics, reminders, workflows ------------------------------------

    async def get_event(self, name: str, *, wait: float = 0.0, default: Any = _NO_DEFAULT) -> Any:
        """The latest value of event ``name``, waiting up to ``wait`` s for a first one;
        ``default`` (or ``NotFound``) when there is none."""
        from bayou.client import channels

        if default is _NO_DEFAULT:
            return await channels.get_event(self._client, self.type_name, self.key, name, wait=wait)
        return await channels.get_event(
            self._client, self.type_name, self.key, name, wait=wait, default=default
        )

    def read_stream(self, name: str, *, after: int = -1) -> AsyncIterator[tuple[int, Any]]:
        """``async for offset, item in ref.read_stream("log")``: each item once, in order,
        while the stream grows, until it closes (resuming across broken connections)."""
        from bayou.client import channels

        return channels.read_stream(self._client, self.type_name, self.key, name, after=after)

    async def send(self, topic: str, value: Any, *, message_id: str | None = None) -> str:
        """Queue ``value`` on ``topic`` (a workflow of this actor takes it with
        ``ctx.receive``); exactly once per ``message_id``."""
        from bayou.client import channels

        return await channels.send(
            self._client, self.type_name, self.key, topic, value, message_id=message_id
        )

    async def reminders(self) -> list[dict[str, Any]]:
        from bayou.client import channels

        return await channels.reminders(self._client, self.type_name, self.key)

    async def set_reminder(self, name: str, method: str, **options: Any) -> dict[str, Any]:
        """``options``: ``due_in`` or ``due_at``, optional ``period`` and ``args``."""
        from bayou.client import channels

        return await channels.set_reminder(
            self._client, self.type_name, self.key, name, method, **options
        )

    async def cancel_reminder(self, name: str) -> bool:
        from bayou.client import channels

        return await channels.cancel_reminder(self._client, self.type_name, self.key, name)

    async def workflow_runs(self) -> list[dict[str, Any]]:
        from bayou.client import channels

        return await channels.workflow_runs(self._client, self.type_name, self.key)

    def handler(self, name: str) -> BoundHandler:
        """The handler ``name`` as a callable, even if the name collides with a ref attribute."""
        bound = self._handlers.get(name)
        if bound is None:
            bound = BoundHandler(self, name, self._handler_spec(name), tell=False)
            self._handlers[name] = bound
        return bound

    def _handler_spec(self, name: str) -> HandlerSpec | None:
        """The class's spec of handler ``name``; None from a type name (nothing to check)."""
        if self._spec is None:
            protocol.validate_method(name)
            return None
        found = self._spec.handlers.get(name)
        if found is None:
            known = ", ".join(sorted(self._spec.handlers)) or "none"
            raise AttributeError(
                f"actor {self.type_name!r} ({self._spec.cls.__qualname__}) has no handler "
                f"{name!r}; its handlers: {known}"
            )
        return found


class TellProxy:
    """The tell side of an ``ActorRef``: ``await ref.tell.add(n=1)`` returns the message id.

    A tell returns once the message is durably stored; the handler runs later. Query
    handlers cannot be told (``TypeError`` when known from the class).
    """

    __slots__ = ("_handlers", "_ref")

    def __init__(self, ref: ActorRef) -> None:
        self._ref = ref
        self._handlers: dict[str, BoundHandler] = {}

    def __repr__(self) -> str:
        return f"{self._ref!r}.tell"

    def __getattr__(self, name: str) -> BoundHandler:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.handler(name)

    def handler(self, name: str) -> BoundHandler:
        """The handler ``name`` as a callable that tells instead of calls."""
        bound = self._handlers.get(name)
        if bound is None:
            spec = self._ref._handler_spec(name)
            if spec is not None and spec.kind == "query":
                raise TypeError(
                    f"{self._ref.type_name}.{name} is a query: it has no effect to deliver "
                    "later, so it cannot be told; call it instead"
                )
            bound = BoundHandler(self._ref, name, spec, tell=True)
            self._handlers[name] = bound
        return bound


class BoundHandler:
    """One handler of one actor, bound for calling (or telling).

    Calling it checks and names the arguments at once (``TypeError`` before anything is
    sent) and returns a coroutine: the result of a call, or the message id of a tell.
    """

    __slots__ = ("_params", "_path", "_query", "_ref", "_tell", "_what", "name")

    def __init__(self, ref: ActorRef, name: str, spec: HandlerSpec | None, *, tell: bool) -> None:
        self._ref = ref
        self.name = name
        self._params = None if spec is None else spec.params
        self._query = spec is not None and spec.kind == "query"
        self._tell = tell
        make_path = protocol.tell_path if tell else protocol.call_path
        self._path = make_path(ref.type_name, ref.key, name)
        self._what = f"{'tell ' if tell else ''}{ref.type_name}.{name}"

    def __repr__(self) -> str:
        return f"<BoundHandler {self._what} on {self._ref!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self._send(self._bind(args, kwargs))

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments by name, positional ones mapped to the handler's parameters."""
        if not args:
            return kwargs
        params = self._params
        if params is None:
            raise TypeError(
                f"{self._what}(): a ref made from the type name {self._ref.type_name!r} takes "
                "keyword arguments only (the parameter order is unknown); pass them by name "
                "or make the ref from the actor class"
            )
        if len(args) > len(params):
            raise TypeError(
                f"{self._what}() takes {len(params)} argument(s) ({', '.join(params)}) "
                f"but {len(args)} positional were given"
            )
        named = dict(zip(params, args, strict=False))
        for name in kwargs:
            if name in named:
                raise TypeError(f"{self._what}() got multiple values for argument {name!r}")
        named.update(kwargs)
        return named

    async def _send(self, args: dict[str, Any]) -> Any:
        ref = self._ref
        idempotency_key = ref._idempotency_key
        if idempotency_key is None and not self._query:
            # Once per logical call: every retry below reuses it.
            idempotency_key = protocol.new_idempotency_key()
        body = await ref._client._post(
            ref.type_name,
            ref.key,
            self.name,
            self._tell,
            self._path,
            args,
            idempotency_key,
            ref._timeout,
            self._what,
        )
        if self._tell:
            return protocol.message_id_of(body, self._what)
        return protocol.result_of(body, self._what)
