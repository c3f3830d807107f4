"""``Client``: calls and tells to actors over HTTP, with safe retries and a hard deadline.

Safety of retries comes from idempotency keys, not from guessing whether a request reached
the silo: every call that may change state and every tell carries an ``Idempotency-Key``
chosen once per logical call and sent unchanged on every attempt, so when a reply is lost
the retry is answered from the silo's record instead of being applied a second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import yarl

from bayou import wire
from bayou.client import protocol
from bayou.client.backoff import Backoff
from bayou.client.ref import ActorRef
from bayou.client.routing import Router
from bayou.errors import RETRYABLE, BayouError, CallTimeout, SiloUnreachable
from bayou.model import ActorBase, spec_of

# Failures of the transport itself: the request may or may not have reached the silo, and
# the idempotency key makes resending it safe either way. TimeoutError covers aiohttp's
# per-attempt timeouts (connect, read and total).
_TRANSPORT_ERRORS: Final = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)

# A silo that accepts no TCP connection within this long is treated like a refused connection
# (retried) rather than allowed to eat the caller's whole deadline.
_CONNECT_TIMEOUT: Final = 5.0

_BACKOFF: Final = Backoff()


class Client:
    """A connection to a bayou cluster: one pooled HTTP session shared by every call.

    Use it as ``async with Client(url) as client:``, or call ``close()`` when done. A session
    passed in is used as is and left open on close; otherwise the client makes its own on
    first use and closes it.

    Every call and tell is bounded by a deadline (``timeout`` seconds, per call or the
    client's default) and by ``max_attempts``. Connection failures, 503 (``Unavailable``,
    ``StorageError``) and 504 are retried with exponential backoff and jitter, always with
    the same idempotency key; request errors (4xx) and ``ActorError`` (500) never are.
    Outcomes once retries stop:

    * the deadline passed: ``CallTimeout`` (a ``TimeoutError``);
    * attempts ran out on connection failures: ``SiloUnreachable``;
    * attempts ran out on a retryable answer: that answer's error.

    In the first two cases the call may still have taken effect; ``detail`` holds the
    ``idempotency_key`` to retry it with exactly-once.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        media_type: str = wire.MSGPACK,
        session: aiohttp.ClientSession | None = None,
        routing: bool = True,
    ) -> None:
        seeds = [url] if isinstance(url, str) else list(url)
        if not seeds:
            raise ValueError("give at least one silo url")
        for seed in seeds:
            if not seed.startswith(("http://", "https://")):
                raise ValueError(f"silo url must start with http:// or https://, got {seed!r}")
        protocol.validate_timeout(timeout)
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts!r}")
        if media_type not in (wire.MSGPACK, wire.JSON):
            raise ValueError(f"media_type must be {wire.MSGPACK!r} or {wire.JSON!r}")
        self.url = seeds[0].rstrip("/")
        # Smart routing: calls go straight to their actor's owner; any silo is a fallback.
        self._router = Router(seeds, enabled=routing)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.media_type = media_type
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._headers: Final = {"Content-Type": media_type, "Accept": media_type}

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Client {self.url}{state}>"

    async def __aenter__(self) -> Self:
        self._open_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the connection pool (unless the session was passed in). Idempotent."""
        self._closed = True
        await self._router.close()
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def ref(self, actor_type: type[ActorBase] | str, key: str) -> ActorRef:
        """A reference to the actor ``key`` of ``actor_type`` (an ``@actor`` class or its name).

        From a class, handler names and positional parameters are known client-side; from a
        name, handlers take keyword arguments only. Raises ``BadRequest`` for an invalid key.
        """
        protocol.validate_key(key)
        if isinstance(actor_type, str):
            protocol.validate_type_name(actor_type)
            return ActorRef(self, actor_type, key, None)
        spec = spec_of(actor_type)
        return ActorRef(self, spec.type_name, key, spec)

    async def call(
        self,
        type_name: str,
        key: str,
        method: str,
        args: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        # A deadline carried to the silo and across retries, which asyncio.timeout cannot do.
        timeout: float | None = None,
    ) -> Any:
        """Invoke ``method`` with named ``args`` and return its result.

        Without an ``idempotency_key`` a fresh one is used for all attempts of this call
        (the client cannot tell a query from an exclusive handler by name alone).
        """
        _validate_call(type_name, key, method, idempotency_key, timeout)
        idem = idempotency_key if idempotency_key is not None else protocol.new_idempotency_key()
        what = f"{type_name}.{method}"
        body = await self._post(
            type_name, key, protocol.call_path(type_name, key, method), args, idem, timeout, what
        )
        return protocol.result_of(body, what)

    async def tell(
        self,
        type_name: str,
        key: str,
        method: str,
        args: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Enqueue ``method`` durably, without waiting for it to run; return the message id.

        Returns once the silo has stored the message. The message id is the idempotency key
        (a fresh one unless given), so a repeated tell with the same key is stored once.
        """
        _validate_call(type_name, key, method, idempotency_key, timeout)
        idem = idempotency_key if idempotency_key is not None else protocol.new_idempotency_key()
        what = f"tell {type_name}.{method}"
        body = await self._post(
            type_name, key, protocol.tell_path(type_name, key, method), args, idem, timeout, what
        )
        return protocol.message_id_of(body, what)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this Client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _post(
        self,
        type_name: str,
        key: str,
        path: str,
        args: Mapping[str, Any] | None,
        idempotency_key: str | None,
        budget: float | None,
        what: str,
    ) -> Any:
        """POST ``args`` to ``path`` with retries; the decoded body of the 2xx answer.

        Arguments are trusted to be validated already: this is the hot path shared by
        ``call``, ``tell`` and every ``ActorRef``.
        """
        session = self._session if self._session is not None else self._open_session()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout if budget is None else budget)
        router = self._router
        await router.ensure(session)
        fallback = 0
        payload = {} if args is None else args if type(args) is dict else dict(args)
        data = wire.encode_body(payload, self.media_type)
        headers = dict(self._headers)
        if idempotency_key is not None:
            headers[wire.IDEMPOTENCY_KEY] = idempotency_key

        attempt = 0
        failure: BaseException | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:  # only after a backoff sleep that overshot the deadline
                raise self._timed_out(what, budget, idempotency_key, attempt, failure)
            attempt += 1
            url = yarl.URL(router.url_for(type_name, key, fallback=fallback) + path, encoded=True)
            # Never "0.000": the silo rejects a non-positive budget as a bad request.
            headers[wire.TIMEOUT_HEADER] = f"{max(remaining, 0.001):.3f}"
            try:
                # The attempt may use all the time left, but no more: the deadline is hard.
                attempt_timeout = aiohttp.ClientTimeout(
                    total=remaining, sock_connect=min(remaining, _CONNECT_TIMEOUT)
                )
                # Redirects are not part of the contract: never re-POST somewhere unexpected.
                async with session.post(
                    url,
                    data=data,
                    headers=headers,
                    timeout=attempt_timeout,
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    content_type = response.content_type
                    raw = await response.read()
                    router.saw_version(session, response.headers.get(wire.RING_VERSION_HEADER))
            except _TRANSPORT_ERRORS as exc:
                failure = exc
                # The routed owner may be gone: ask a seed next, and relearn the ring.
                fallback += 1
                router.stale(session)
            except aiohttp.ClientError as exc:
                # Not a lost connection but a broken exchange (bad URL, malformed HTTP):
                # resending the same bytes would fail the same way.
                raise BayouError(f"{what}: HTTP request to {url} failed: {exc!r}") from exc
            else:
                if 200 <= status < 300:
                    return protocol.decode_success(raw, content_type, what)
                error = protocol.decode_error(raw, content_type, status)
                if not isinstance(error, RETRYABLE):
                    raise error
                failure = error
                router.stale(session)

            now = loop.time()
            if now >= deadline:
                raise self._timed_out(what, budget, idempotency_key, attempt, failure)
            if attempt >= self.max_attempts:
                if isinstance(failure, BayouError):
                    raise failure
                raise SiloUnreachable(
                    f"{what}: could not reach a silo at {url.origin()} "
                    f"in {attempt} attempts (last: {_describe(failure)})",
                    {"idempotency_key": idempotency_key, "attempts": attempt},
                ) from failure
            delay = _BACKOFF.delay(attempt - 1)
            if now + delay >= deadline:
                # Sleeping into the deadline would only postpone the same outcome.
                raise self._timed_out(what, budget, idempotency_key, attempt, failure)
            await asyncio.sleep(delay)

    def _timed_out(
        self,
        what: str,
        budget: float | None,
        idempotency_key: str | None,
        attempts: int,
        failure: BaseException | None,
    ) -> CallTimeout:
        error = CallTimeout(
            f"{what}: no reply within {self.timeout if budget is None else budget}s "
            f"({attempts} attempts, last: {_describe(failure)})",
            {"idempotency_key": idempotency_key, "attempts": attempts},
        )
        error.__cause__ = failure
        return error


def _validate_call(
    type_name: str, key: str, method: str, idempotency_key: str | None, timeout: float | None
) -> None:
    protocol.validate_type_name(type_name)
    protocol.validate_key(key)
    protocol.validate_method(method)
    protocol.validate_idempotency_key(idempotency_key)
    protocol.validate_timeout(timeout)


def _describe(failure: BaseException | None) -> str:
    if failure is None:
        return "none"
    text = str(failure)
    return f"{type(failure).__name__}: {text}" if text else type(failure).__name__
