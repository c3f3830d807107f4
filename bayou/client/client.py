"""``Client``: calls and tells to actors, with safe retries and a hard deadline.

Each attempt travels over the link (``link_transport``: msgpack frames on one websocket per
silo, the fast path) or as a plain HTTP request; retries, keys and deadlines do not depend
on which.

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
from bayou.client.link_transport import LinkRefused, LinkTransport
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

# Link replies carry no ring version, so a client on the link re-reads the ring this often
# while it is busy (routing is only a speed-up: a stale table costs a forward, never a call).
_RING_POLL: Final = 2.0

TRANSPORTS: Final = ("auto", "link", "http")
# The multiplexed link where the silo serves it (every bayou silo does), plain HTTP where
# something in between refuses the upgrade.
DEFAULT_TRANSPORT: Final = "auto"


class Client:
    """A connection to a bayou cluster: one pooled HTTP session shared by every call.

    Use it as ``async with Client(url) as client:``, or call ``close()`` when done. A session
    passed in is used as is and left open on close; otherwise the client makes its own on
    first use and closes it.

    Every call and tell is bounded by a deadline (``timeout`` seconds, per call or the
    client's default) and, if given, by ``max_attempts``. Connection failures, 503
    (``Unavailable``, ``StorageError``) and 504 are retried with exponential backoff and
    jitter, always with the same idempotency key; request errors (4xx) and ``ActorError``
    (500) never are. By default retries go on until the deadline, so a call rides out a
    silo's crash (its actors answer again once the cluster has declared it dead, a few
    seconds later) instead of failing a second into it. Outcomes once retries stop:

    * the deadline passed: ``CallTimeout`` (a ``TimeoutError``);
    * attempts ran out on connection failures: ``SiloUnreachable``;
    * attempts ran out on a retryable answer: that answer's error.

    In the first two cases the call may still have taken effect; ``detail`` holds the
    ``idempotency_key`` to retry it with exactly-once.

    ``transport`` picks how attempts travel: ``"link"`` over the multiplexed link (msgpack,
    many calls per websocket message: several times the throughput of HTTP), ``"http"`` as
    one HTTP request each (the default for now), and ``"auto"`` over the link to every silo
    that serves it and over HTTP to any that refuses the upgrade (an older silo, a proxy
    without websockets). ``media_type`` applies to HTTP attempts only; the link always uses msgpack.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        timeout: float = 30.0,
        max_attempts: int | None = None,
        media_type: str = wire.MSGPACK,
        session: aiohttp.ClientSession | None = None,
        routing: bool = True,
        transport: str = DEFAULT_TRANSPORT,
        secret: str | None = None,
    ) -> None:
        seeds = [url] if isinstance(url, str) else list(url)
        if not seeds:
            raise ValueError("give at least one silo url")
        for seed in seeds:
            if not seed.startswith(("http://", "https://")):
                raise ValueError(f"silo url must start with http:// or https://, got {seed!r}")
        protocol.validate_timeout(timeout)
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts!r}")
        if media_type not in (wire.MSGPACK, wire.JSON):
            raise ValueError(f"media_type must be {wire.MSGPACK!r} or {wire.JSON!r}")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.transport = transport
        self._link: LinkTransport | None = None  # made with the session, if not "http"
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's
        self.url = seeds[0].rstrip("/")
        # Smart routing: calls go straight to their actor's owner; any silo is a fallback.
        self._router = Router(seeds, enabled=routing)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.media_type = media_type
        self._session = session
        self._owns_session = session is None
        # The cluster's shared secret, sent on every request and link of our own session.
        self._auth = wire.bearer(secret) if secret else {}
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
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        session, self._session = self._session, None
        self._loop = None
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
        path = protocol.call_path(type_name, key, method)
        body = await self._post(type_name, key, method, False, path, args, idem, timeout, what)
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
        path = protocol.tell_path(type_name, key, method)
        body = await self._post(type_name, key, method, True, path, args, idem, timeout, what)
        return protocol.message_id_of(body, what)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this Client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._auth)
        if self._link is None and self.transport != "http":
            self._link = LinkTransport(self._session, fallback=self.transport == "auto")
        return self._session

    async def _post(
        self,
        type_name: str,
        key: str,
        method: str,
        tell: bool,
        path: str,
        args: Mapping[str, Any] | None,
        idempotency_key: str | None,
        budget: float | None,
        what: str,
    ) -> Any:
        """Send ``args`` with retries; the decoded body of the success answer.

        Over HTTP: a POST to ``path``. Over the link: the same call as a frame. Arguments are
        trusted to be validated already: this is the hot path shared by ``call``, ``tell``
        and every ``ActorRef``.
        """
        if self._session is None or (self._link is None and self.transport != "http"):
            self._open_session()
        session = self._session
        assert session is not None
        link = self._link
        loop = self._loop
        if loop is None:  # asking for it costs a system call (getpid) on Python 3.11
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + (self.timeout if budget is None else budget)
        router = self._router
        if router.table is None:
            await router.ensure(session)
        fallback = 0
        payload = {} if args is None else args if type(args) is dict else dict(args)
        data: bytes | None = None  # the HTTP body, encoded once if an attempt needs it
        headers = self._headers
        if link is not None:
            router.poll(session, _RING_POLL, now)

        attempt = 0
        failure: BaseException | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:  # only after a backoff sleep that overshot the deadline
                raise self._timed_out(what, budget, idempotency_key, attempt, failure)
            attempt += 1
            base = router.url_for(type_name, key, fallback=fallback)
            # -- the link (transport "link" or "auto"): one frame, no HTTP request ----------
            if link is not None and link.serves(base):
                try:
                    return await link.send(
                        base, tell, type_name, key, method, payload, idempotency_key, remaining
                    )
                except LinkRefused:
                    attempt -= 1  # nothing was sent: go again at once, over HTTP
                    continue
                except SiloUnreachable as exc:  # the connection failed or dropped
                    # A transport failure, like aiohttp's for HTTP: not the silo's answer.
                    failure = ConnectionError(str(exc))
                    fallback += 1
                    router.stale(session)
                except BayouError as answer:  # the silo's own error reply
                    if not isinstance(answer, RETRYABLE):
                        raise
                    failure = answer
                    router.stale(session)
                await self._backoff(
                    loop, deadline, attempt, failure, base, what, budget, idempotency_key
                )
                continue
            # -- plain HTTP ------------------------------------------------------------------
            if data is None:
                data = wire.encode_body(payload, self.media_type)
                headers = dict(self._headers)
                if idempotency_key is not None:
                    headers[wire.IDEMPOTENCY_KEY] = idempotency_key
            url = yarl.URL(base + path, encoded=True)
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
            await self._backoff(
                loop, deadline, attempt, failure, base, what, budget, idempotency_key
            )

    async def _backoff(
        self,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        attempt: int,
        failure: BaseException | None,
        base: str,
        what: str,
        budget: float | None,
        idempotency_key: str | None,
    ) -> None:
        """After a failed attempt: raise if retries are over, else sleep until the next."""
        now = loop.time()
        if now >= deadline:
            raise self._timed_out(what, budget, idempotency_key, attempt, failure)
        if self.max_attempts is not None and attempt >= self.max_attempts:
            if isinstance(failure, BayouError):
                raise failure
            raise SiloUnreachable(
                f"{what}: could not reach a silo at {base} "
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
