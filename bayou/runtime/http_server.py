"""Where the silo's HTTP app meets the network: the runner and the connection protocol.

aiohttp answers some requests before the app's middleware ever sees them: a request it
cannot parse (an overlong request line or header, a bad chunk size, garbage on the port),
and errors raised outside the middleware (an ``Expect`` it does not know). It answers those
in text/plain. ``HttpRunner`` serves the app through a protocol that answers them with the
error shape every other failure has, ``{"error": {"type", "message", "detail"}}``, the
closest 4xx status, and a log line without a traceback: a malformed request is the
client's fault, not the silo's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from bayou import wire
from bayou.errors import BadRequest, BayouError, HeadersTooLarge, InternalError, UriTooLong
from bayou.runtime.http import Served, error_of_http_exception

log = logging.getLogger("bayou.http")

# The parser's limits. aiohttp reports only the limit an overlong line broke, so the two
# differ to tell a long request line (414) from a long header field (431).
MAX_REQUEST_LINE = 16 * 1024
MAX_HEADER_FIELD = 8190
MAX_HEADERS = 128


def plain_error(exc: BayouError) -> web.Response:
    """The error as JSON, for answers given before (or outside) the app: no content
    negotiation, and the connection closes, since what follows on it cannot be trusted."""
    response = web.Response(
        body=wire.encode_body(exc.to_wire(), wire.JSON),
        status=exc.status,
        content_type=wire.JSON,
    )
    response.force_close()
    return response


def _parse_error(exc: BaseException | None, message: str | None) -> BayouError:
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == MAX_REQUEST_LINE:
            return UriTooLong(f"the request line is longer than {limit} bytes", {"limit": limit})
        return HeadersTooLarge(f"a header field is longer than {limit} bytes", {"limit": limit})
    if isinstance(exc, BadHttpMessage) and "too many headers" in exc.message.lower():
        return HeadersTooLarge(
            f"the request has more than {MAX_HEADERS} header fields", {"limit": MAX_HEADERS}
        )
    # aiohttp's messages draw a caret under the offending byte on a line of their own.
    text = message or (exc.message if isinstance(exc, BadHttpMessage) else "") or "unparsable"
    lines = [line.strip() for line in text.splitlines()]
    summary = " ".join(line for line in lines if line and set(line) != {"^"})
    return BadRequest(f"malformed HTTP request: {summary[:300]}")


class _Protocol(web.RequestHandler):
    """aiohttp's connection protocol, answering its own errors in the error shape."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Called by aiohttp for a request it could not parse (4xx), and for an exception
        that escaped the app (5xx, which the error middleware should make impossible)."""
        if request.writer.output_size > 0:
            # The same contract as aiohttp's: once bytes are out, only closing is left.
            raise ConnectionError("a response was already started; cannot send an error")
        err: BayouError
        if status < 500:
            err = _parse_error(exc, message)
            log.info("refused a request from %s: %s", request.remote, err)
        else:
            err = InternalError("internal error; the silo log has details")
            log.error("unexpected error serving a request from %s", request.remote, exc_info=exc)
        return plain_error(err)


class _Server(web.Server):
    """aiohttp's low-level server, with ``_Protocol`` for every connection."""

    def __init__(
        self,
        handler: Served,
        *,
        request_factory: Any,
        handler_cancellation: bool,
        **protocol_kwargs: Any,
    ) -> None:
        super().__init__(
            handler,
            request_factory=request_factory,
            handler_cancellation=handler_cancellation,
            **protocol_kwargs,
        )
        self._protocol_kwargs = protocol_kwargs

    def __call__(self) -> web.RequestHandler:
        return _Protocol(self, loop=asyncio.get_running_loop(), **self._protocol_kwargs)


def _outside_the_middleware(handler: Served) -> Served:
    """The app's request handler, with HTTP errors raised before its middleware runs (an
    unknown ``Expect``, say) turned into the error shape."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return plain_error(error_of_http_exception(request, exc))

    return handle


class HttpRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer every failure in the error shape.

    ``front``, given the app and its request handler, returns the handler to serve
    instead: one that answers some requests itself (failures too, in the error shape)
    and hands the rest on.
    """

    def __init__(
        self,
        app: web.Application,
        front: Callable[[web.Application, Served], Served] | None = None,
        **kwargs: Any,
    ) -> None:
        self._front = front
        limits = {
            "max_line_size": MAX_REQUEST_LINE,
            "max_field_size": MAX_HEADER_FIELD,
            "max_headers": MAX_HEADERS,
        }
        kwargs = limits | kwargs
        super().__init__(app, **kwargs)
        runner_only = ("handle_signals", "shutdown_timeout")
        self._protocol_kwargs = {k: v for k, v in kwargs.items() if k not in runner_only}

    async def _make_server(self) -> web.Server:
        # aiohttp's own runs the app's start-up and builds its server; ours takes over the
        # request handling it set up. If a future aiohttp stops calling this, the raw-socket
        # tests in tests/cluster/test_bad_input.py fail.
        server = await super()._make_server()
        # The front's own answers come in the error shape already: only what it hands on
        # needs the wrapper.
        handler = _outside_the_middleware(server.request_handler)
        if self._front is not None:
            handler = self._front(self.app, handler)
        return _Server(
            handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            **self._protocol_kwargs,
        )
