"""The client's side of the wire contract: validation, paths and the shape of replies.

Pure functions with no I/O, shared by ``Client`` and ``ActorRef``. Checks here run before
anything is sent, so a request the silo would refuse fails fast with the same error class
the silo would have answered with.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bayou import wire
from bayou.errors import BadRequest, BayouError, from_wire
from bayou.ids import unique_id
from bayou.model import TYPE_NAME


def new_idempotency_key() -> str:
    """A fresh idempotency key, 32 hex digits: one per logical call, reused by its retries."""
    return unique_id()


def validate_type_name(type_name: str) -> None:
    """Raise ``BadRequest`` unless ``type_name`` is a possible ``@actor`` type name."""
    if not isinstance(type_name, str) or not TYPE_NAME.match(type_name):
        raise BadRequest(f"actor type name {type_name!r} must match {TYPE_NAME.pattern}")


def validate_key(key: str) -> None:
    """Raise ``BadRequest`` for an actor key the silo would refuse."""
    if not isinstance(key, str):
        raise BadRequest(f"actor key must be a str, got {type(key).__name__}")
    problem = wire.key_problem(key)
    if problem is not None:
        raise BadRequest(problem)


def validate_method(method: str) -> None:
    """Raise ``BadRequest`` unless ``method`` is a non-empty str."""
    if not isinstance(method, str) or not method:
        raise BadRequest(f"method must be a non-empty str, got {method!r}")


def validate_idempotency_key(idempotency_key: str | None) -> None:
    """Raise ``BadRequest`` for an idempotency key the silo would refuse (None is fine)."""
    if idempotency_key is None:
        return
    if not isinstance(idempotency_key, str):
        raise BadRequest(f"idempotency key must be a str, got {type(idempotency_key).__name__}")
    problem = wire.key_problem(idempotency_key, "idempotency key")
    if problem is not None:
        raise BadRequest(problem)


def validate_timeout(timeout: float | None) -> None:
    """Raise ``ValueError`` unless ``timeout`` is None or a positive number of seconds."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


def call_path(type_name: str, key: str, method: str) -> str:
    """The path of a call, each segment percent-encoded (keys may hold '/', spaces, unicode)."""
    return wire.CALL_ROUTE.format(
        type=quote(type_name, safe=""), key=quote(key, safe=""), method=quote(method, safe="")
    )


def tell_path(type_name: str, key: str, method: str) -> str:
    """The path of a tell, each segment percent-encoded."""
    return wire.TELL_ROUTE.format(
        type=quote(type_name, safe=""), key=quote(key, safe=""), method=quote(method, safe="")
    )


def media_of(content_type: str) -> str:
    """The wire media type to decode a reply with, from its Content-Type."""
    # The silo answers in the media type asked for, but a proxy or an early failure may
    # not: decode what was actually sent.
    return wire.MSGPACK if content_type == wire.MSGPACK else wire.JSON


def decode_success(raw: bytes, content_type: str, what: str) -> Any:
    """The body of a 2xx reply; ``BayouError`` if it does not parse."""
    media = media_of(content_type)
    try:
        return wire.decode_body(raw, media)
    except ValueError as exc:
        raise BayouError(
            f"{what}: the silo's success reply is not valid {media} "
            f"(Content-Type {content_type!r}): {exc}"
        ) from None


def decode_error(raw: bytes, content_type: str, status: int) -> BayouError:
    """The exception an error reply stands for, whatever its body looks like."""
    body: Any
    try:
        body = wire.decode_body(raw, media_of(content_type))
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return from_wire(body, status)


def result_of(body: Any, what: str) -> Any:
    """The ``result`` of a call's success body; ``BayouError`` if the body is not that shape."""
    if type(body) is dict and "result" in body:
        return body["result"]
    raise BayouError(
        f"{what}: the silo's success reply is not a {{'result': ...}} object: {_preview(body)}"
    )


def message_id_of(body: Any, what: str) -> str:
    """The ``message_id`` of a tell's success body; ``BayouError`` if not that shape."""
    if type(body) is dict:
        message_id = body.get("message_id")
        if isinstance(message_id, str):
            return message_id
    raise BayouError(
        f"{what}: the silo's success reply is not a {{'message_id': str}} object: {_preview(body)}"
    )


def _preview(body: Any) -> str:
    text = repr(body)
    return text if len(text) <= 200 else text[:200] + "..."
