"""The exceptions bayou raises, on the silo and in the client alike.

Every error crosses the wire as ``{"error": {"type", "message", "detail"}}`` and the client
turns it back into the same class, so ``except bayou.UnknownMethod`` works on both sides.

    BayouError
    ├── RequestError                 the request itself is wrong; do not retry (4xx)
    │   ├── BadRequest               malformed body, bad key, bad header (400)
    │   ├── Unauthorized             missing or wrong shared secret (401)
    │   ├── NotFound                 no such route (404)
    │   ├── UnknownActorType         no actor registered under that type name (404)
    │   ├── UnknownMethod            the actor has no such handler (404)
    │   ├── MethodNotAllowed         the route exists for another HTTP method (405)
    │   ├── RequestTimeout           the request body did not arrive in time (408)
    │   ├── IdempotencyKeyReused     same key, different method or arguments (409)
    │   ├── DeadlockError            a call would wait on itself (409)
    │   ├── PayloadTooLarge          body over the silo's limit (413)
    │   ├── UriTooLong               request line over the silo's limit (414)
    │   ├── UnsupportedMediaType     neither JSON nor msgpack (415)
    │   ├── InvalidArguments         arguments fail the handler's type hints (422)
    │   └── HeadersTooLarge          a header, or the number of headers, over the limit (431)
    ├── ActorError                   the handler raised; terminal and recorded (500)
    ├── InternalError                a bug in bayou; details are in the silo log (500)
    ├── CallTimeout                  no reply in time; the call may still complete (504)
    ├── Unavailable                  the silo cannot serve now; safe to retry (503)
    │   └── SiloUnreachable          no connection to any silo
    ├── StorageError                 the store failed; the turn was not committed
    │   └── FencedWrite              the writer no longer owns the partition
    ├── NonDeterminismError          replay diverged from the journal
    └── ConfigurationError           a silo's settings contradict the cluster's

Terminal versus retryable is a type: ``RETRYABLE`` lists the classes a client may retry with
the same idempotency key.
"""

from __future__ import annotations

from typing import Any, ClassVar


class BayouError(Exception):
    """Root of every bayou error; ``status`` is the HTTP status it travels with."""

    status: ClassVar[int] = 500

    def __init__(self, message: str = "", detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message

    def to_wire(self) -> dict[str, Any]:
        """The error's stable JSON shape."""
        return {
            "error": {"type": type(self).__name__, "message": self.message, "detail": self.detail}
        }


class RequestError(BayouError):
    """The request is wrong as sent; retrying it unchanged gives the same answer."""

    status = 400


class BadRequest(RequestError):
    status = 400


class UnknownActorType(RequestError):
    status = 404


class UnknownMethod(RequestError):
    status = 404


class Unauthorized(RequestError):
    """The silo requires its shared secret (``Authorization: Bearer ...``) and got none
    or a wrong one."""

    status = 401


class NotFound(RequestError):
    status = 404


class MethodNotAllowed(RequestError):
    status = 405


class RequestTimeout(RequestError):
    """The request's body did not arrive in full within the silo's ``body_timeout``."""

    status = 408


class IdempotencyKeyReused(RequestError):
    status = 409


class DeadlockError(RequestError):
    """The call would wait on an actor that is waiting on the caller."""

    status = 409


class PayloadTooLarge(RequestError):
    status = 413


class UriTooLong(RequestError):
    """The request line (method, path and query) is longer than the silo reads."""

    status = 414


class UnsupportedMediaType(RequestError):
    status = 415


class InvalidArguments(RequestError):
    """Arguments that do not validate; ``detail`` lists ``{"field", "message"}`` per problem."""

    status = 422


class HeadersTooLarge(RequestError):
    """A header field is longer than the silo reads, or there are too many of them."""

    status = 431


class ActorError(BayouError):
    """The handler raised: recorded as the invocation's terminal outcome, state unchanged.

    ``detail`` carries ``{"exception": "<the handler's exception class name>"}``.
    """

    status = 500

    @property
    def exception_type(self) -> str:
        if isinstance(self.detail, dict):
            return str(self.detail.get("exception", ""))
        return ""


class InternalError(BayouError):
    """An unexpected failure inside bayou; the silo logged it with a traceback."""

    status = 500


class CallTimeout(BayouError, TimeoutError):
    """No reply within the deadline. The call may still complete; retry with the same key."""

    status = 504


class Unavailable(BayouError):
    """The silo cannot take the call now (starting, draining, not the owner)."""

    status = 503


class SiloUnreachable(Unavailable, ConnectionError):
    """No silo could be reached."""


class StorageError(BayouError):
    """The store failed; nothing of the turn was committed."""

    status = 503


class FencedWrite(StorageError):
    """A write carried an epoch the partition no longer has: the writer lost ownership."""


class NonDeterminismError(BayouError):
    """A replayed handler asked for a different step than the journal recorded."""

    status = 500


class ConfigurationError(BayouError):
    """A silo's settings contradict what the cluster fixed (e.g. the partition count)."""

    status = 500


RETRYABLE: tuple[type[BayouError], ...] = (CallTimeout, Unavailable, StorageError)

_BY_NAME: dict[str, type[BayouError]] = {}


def _collect(cls: type[BayouError]) -> None:
    _BY_NAME[cls.__name__] = cls
    for sub in cls.__subclasses__():
        _collect(sub)


_collect(BayouError)


def error_class(name: str) -> type[BayouError]:
    """The class for a wire error type name; unknown names map to ``BayouError``."""
    found = _BY_NAME.get(name)
    if found is None:
        _collect(BayouError)  # subclasses defined since import (e.g. by a backend)
        found = _BY_NAME.get(name, BayouError)
    return found


def from_wire(body: Any, status: int) -> BayouError:
    """Rebuild the exception a silo sent, whatever its shape."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        cls = error_class(str(err.get("type", "")))
        return cls(str(err.get("message", "")), err.get("detail"))
    if status == 503:
        return Unavailable(f"silo answered {status}")
    if status == 504:
        return CallTimeout(f"silo answered {status}")
    return BayouError(f"silo answered {status}: {str(body)[:200]}")
