"""What a handler's return or exception becomes on the wire and in the journal."""

from __future__ import annotations

from typing import Any

from pydantic_core import PydanticSerializationError

from bayou.errors import ActorError
from bayou.model import HandlerSpec


def actor_error(exc: Exception) -> ActorError:
    """A handler's own exception as the typed error its caller gets (terminal, recorded)."""
    return ActorError(str(exc) or type(exc).__name__, {"exception": type(exc).__name__})


def dump_result(handler: HandlerSpec, result: Any) -> Any:
    """The handler's return value as plain data; an ``ActorError`` if it breaks its type."""
    try:
        return handler.dump_result(result)
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise ActorError(
            f"{handler.name} returned a value that does not match its return type: {exc}",
            {"exception": "ResultTypeError"},
        ) from None
