"""The silo's HTTP API: actor calls and tells, health, cluster view, OpenAPI.

Every failure leaves as ``{"error": {"type", "message", "detail"}}`` with a 4xx or 5xx
status; no traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from bayou import wire
from bayou.errors import (
    BadRequest,
    BayouError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
)
from bayou.runtime.transport import LinkServer

if TYPE_CHECKING:
    from bayou.runtime.silo import Silo

log = logging.getLogger("bayou.http")

SILO: web.AppKey[Silo] = web.AppKey("silo")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What the server calls for each request, before the app has routed it.
Served = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# Bodies sent without a precise type are read as JSON: ``curl -d`` labels them as a form and
# many HTTP libraries as octet-stream, and refusing those would only confuse people.
_JSON_TYPES = frozenset(
    {
        "application/json",
        "text/json",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
    }
)
_MSGPACK_TYPES = frozenset({wire.MSGPACK, "application/x-msgpack"})
# Content-Type headers exactly as clients usually send them, known without parsing.
_PLAIN_MEDIA_TYPES: dict[str, str] = {t: wire.JSON for t in _JSON_TYPES} | {
    t: wire.MSGPACK for t in _MSGPACK_TYPES
}


def build_http_app(silo: Silo) -> web.Application:
    """The aiohttp application of one silo."""
    app = web.Application(
        client_max_size=silo.settings.max_body_bytes, middlewares=[_error_middleware]
    )
    app[SILO] = silo
    # The router tries the routes under /v1/actors in this order, a pattern match each:
    # calls first, the route nearly every request takes. No other POST route has its four
    # segments, so the order changes what they match only among the five-segment ones.
    app.router.add_post(wire.CALL_ROUTE, _call)
    # Before the tell route, which ".../topics/tell" (a topic named "tell") also matches.
    app.router.add_post(wire.TOPIC_ROUTE, _send_to_topic)
    app.router.add_post(wire.TELL_ROUTE, _tell)
    app.router.add_get(wire.EVENT_ROUTE, _event)
    app.router.add_get(wire.STREAM_ROUTE, _stream)
    app.router.add_get(wire.STREAM_ITEMS_ROUTE, _stream_items)
    app.router.add_get(wire.REMINDERS_ROUTE, _reminders_list)
    app.router.add_put(wire.REMINDER_ROUTE, _reminder_set)
    app.router.add_delete(wire.REMINDER_ROUTE, _reminder_cancel)
    app.router.add_get(wire.WORKFLOWS_ROUTE, _workflow_runs)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get(wire.CLUSTER_ROUTE, _cluster)
    app.router.add_get(wire.OPENAPI_ROUTE, _openapi)
    from bayou.runtime.http_ops import mount_operations  # it imports this module

    mount_operations(app)
    LinkServer(silo.router.serve, fast=silo.router.serve_nowait).mount(app)
    from bayou.runtime.openapi import openapi_document  # it imports this module

    # Built from the routes just registered: one without a description stops the silo here.
    app[OPENAPI] = openapi_document(silo.app, served_routes(app))
    return app


def served_routes(app: web.Application) -> list[tuple[str, str]]:
    """(HTTP method, route template) for every route ``app`` serves."""
    return [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    ]


# -- errors ---------------------------------------------------------------------------------


def _media_type_for_reply(request: web.BaseRequest) -> str:
    accept = request.headers.get("Accept", "")
    return (
        wire.MSGPACK if wire.MSGPACK in accept or "application/x-msgpack" in accept else wire.JSON
    )


def _respond(request: web.Request, body: Any, status: int = 200) -> web.Response:
    return _reply(request.app[SILO], request, body, status)


def _reply(silo: Silo, request: web.BaseRequest, body: Any, status: int = 200) -> web.Response:
    media_type = _media_type_for_reply(request)
    response = web.Response(
        body=wire.encode_body(body, media_type), status=status, content_type=media_type
    )
    # Clients compare it with the ring they route by, and refresh when it moved.
    response.headers[wire.RING_VERSION_HEADER] = str(silo.agent.view.version)
    return response


def error_response(request: web.Request, exc: BayouError) -> web.Response:
    return _reply(request.app[SILO], request, exc.to_wire(), exc.status)


def _authorized(silo: Silo, request: web.BaseRequest) -> bool:
    secret = silo.secret
    if secret is None or request.path in wire.OPEN_ROUTES:
        return True
    given = request.headers.get(wire.AUTHORIZATION, "")
    expected = f"Bearer {secret}"
    return hmac.compare_digest(given.encode(), expected.encode())


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await _guarded(request.app[SILO], request, handler, request)


async def _guarded(
    silo: Silo,
    request: web.BaseRequest,
    handler: Callable[..., Awaitable[web.StreamResponse]],
    *args: Any,
) -> web.StreamResponse:
    """``handler(*args)``, once the request is authorized, with every failure turned into
    its error response: what the error middleware does, and the direct routes too."""
    try:
        if not _authorized(silo, request):
            raise Unauthorized(
                "this silo requires the cluster's shared secret (Authorization: Bearer ...)",
                {"field": wire.AUTHORIZATION},
            )
        return await handler(*args)
    except BayouError as exc:
        if not isinstance(exc, RequestError):
            log.info("%s %s -> %s: %s", request.method, request.path, type(exc).__name__, exc)
        response = _reply(silo, request, exc.to_wire(), exc.status)
        if isinstance(exc, RequestTimeout) or request.content.exception() is not None:
            # What is left of that body cannot be told from a next request: close.
            response.force_close()
        return response
    except web.HTTPRequestEntityTooLarge:
        limit = silo.settings.max_body_bytes
        too_large = PayloadTooLarge(f"request body is larger than {limit} bytes", {"limit": limit})
        return _reply(silo, request, too_large.to_wire(), too_large.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        err = error_of_http_exception(request, exc)
        return _reply(silo, request, err.to_wire(), err.status)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        err = InternalError("internal error; the silo log has details")
        return _reply(silo, request, err.to_wire(), err.status)


def direct_routes(app: web.Application, routed: Served) -> Served:
    """The app's request handler, with actor calls and tells served without aiohttp's
    router and middleware chain: they are nearly every request a silo gets, and matching
    them against the routes cost about a tenth of a call (bench/cpu.py, ``add-raw``).

    A request that is not plainly one of them (another method or path, a segment the
    route's pattern would refuse, an ``Expect`` header, which aiohttp answers before its
    handler) goes through the router as before, so both ways answer alike.
    """
    silo = app[SILO]

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "POST" and hdrs.EXPECT not in request.headers:
            # What the router matches: the path decoded, except %2F and %25 kept encoded.
            path = request.rel_url.path_safe
            if path.startswith(_ACTORS):
                parts = path[len(_ACTORS) :].split("/")
                if _plain(parts):
                    if len(parts) == 3:
                        return await _guarded(silo, request, _call_actor, silo, request, *parts)
                    if len(parts) == 4 and parts[3] == "tell" and parts[2] != "topics":
                        return await _guarded(silo, request, _tell_actor, silo, request, *parts[:3])
        return await routed(request)

    return handle


_ACTORS: Final = "/v1/actors/"


def _plain(parts: list[str]) -> bool:
    """Every segment one that the route's ``{name}`` pattern matches; %2F and %25 in them
    are decoded in place, as the router does."""
    for i, part in enumerate(parts):
        if not part or "{" in part or "}" in part:
            return False
        if "%" in part:
            parts[i] = part.replace("%2F", "/").replace("%25", "%")
    return True


def error_of_http_exception(request: web.BaseRequest, exc: web.HTTPException) -> BayouError:
    """The bayou error for an HTTP error aiohttp raised (no route, wrong method, ...)."""
    err: BayouError
    if exc.status == 404:
        err = NotFound(f"no route for {request.method} {request.path}")
    elif exc.status == 405:
        err = MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
    else:
        err = BadRequest(exc.text or exc.reason)
        err.status = exc.status  # type: ignore[misc]
    return err


# -- request parsing --------------------------------------------------------------------------


def _route_params(request: web.Request) -> tuple[str, str, str]:
    info = request.match_info
    return info["type"], info["key"], info["method"]


def _check_key(key: str) -> None:
    problem = wire.key_problem(key)
    if problem is not None:
        raise BadRequest(problem, {"field": "key"})


async def _read_body(request: web.BaseRequest, silo: Silo) -> bytes:
    """The whole body, within ``body_timeout``; what goes wrong while it arrives is the
    client's doing, so each failure is a 4xx."""
    seconds = silo.settings.body_timeout
    try:
        content = request.content
        if content.is_eof() and content.exception() is None:
            # Arrived whole already (a small body comes with its headers): taken as it
            # lies, with no timer (which cost a tenth of a small query) and no read loop.
            data = bytes(content.read_nowait())
            limit = silo.settings.max_body_bytes
            if len(data) > limit:  # what request.read() checks as it reads
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
            return data
        async with asyncio.timeout(seconds):
            return await request.read()
    except (
        TimeoutError,
        web.RequestPayloadError,
        HttpProcessingError,
        ConnectionResetError,
    ) as exc:
        if request.content.exception() is not None:
            # The parser gave up on this body and feeds it no more. Marked as ended, aiohttp
            # does not try to read its rest after the answer (which would fail again, and
            # be logged as an unhandled exception).
            request.content.feed_eof()
        raise _body_error(exc, seconds) from None


def _body_error(exc: Exception, seconds: float) -> BayouError:
    if isinstance(exc, TimeoutError):
        # Also how a body that turns malformed after the handler began reading ends:
        # aiohttp's parser drops such a body without failing its reader.
        return RequestTimeout(
            f"the request body did not arrive within {seconds} s", {"field": "body"}
        )
    if isinstance(exc, ConnectionResetError):  # nobody is left to read this answer
        return BadRequest("the connection closed before the body was complete")
    # aiohttp's C parser wraps the parse error in a RequestPayloadError, its Python one not.
    cause = exc if isinstance(exc, HttpProcessingError) else exc.__cause__
    reason = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
    return BadRequest(f"malformed request body: {reason}", {"field": "body"})


def _media_type_of(request: web.BaseRequest) -> str:
    """The wire media type of the request's body, from its Content-Type header."""
    media_type = request.content_type
    if media_type in _JSON_TYPES or media_type.endswith("+json"):
        return wire.JSON
    if media_type in _MSGPACK_TYPES:
        return wire.MSGPACK
    raise UnsupportedMediaType(
        f"content type {media_type!r} is not supported; send {wire.JSON} or {wire.MSGPACK}",
        {"field": "Content-Type"},
    )


async def _read_args(request: web.BaseRequest, silo: Silo) -> dict[str, Any]:
    """The JSON object (or msgpack map) of named arguments; an empty body means none."""
    raw_type = request.headers.get("Content-Type")
    if raw_type is None:
        media_type = wire.JSON
    else:
        media_type = _PLAIN_MEDIA_TYPES.get(raw_type) or _media_type_of(request)
    data = await _read_body(request, silo)
    if not data.strip():
        return {}
    try:
        body = wire.decode_body(data, media_type)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed {media_type} body: {exc}", {"field": "body"}) from None
    if not isinstance(body, dict):
        raise BadRequest(
            'the body must be an object of named arguments, e.g. {"n": 1}', {"field": "body"}
        )
    for name in body:
        if not isinstance(name, str):
            raise BadRequest("argument names must be strings", {"field": "body"})
    return body


def _idempotency_key(request: web.BaseRequest) -> str | None:
    key = request.headers.get(wire.IDEMPOTENCY_KEY)
    if key is None:
        return None
    problem = wire.key_problem(key, wire.IDEMPOTENCY_KEY)
    if problem is not None:
        raise BadRequest(problem, {"field": wire.IDEMPOTENCY_KEY})
    return key


def _timeout(request: web.BaseRequest, silo: Silo) -> float | None:
    """The caller's deadline; longer than ``max_call_timeout`` is clamped, not refused, so a
    patient client still gets an answer (possibly a 504) instead of an error."""
    raw = request.headers.get(wire.TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value > 0:  # also catches NaN
        raise BadRequest(
            f"{wire.TIMEOUT_HEADER} must be a positive number of seconds, got {raw[:40]!r}",
            {"field": wire.TIMEOUT_HEADER},
        )
    return min(value, silo.settings.max_call_timeout)


# -- routes ---------------------------------------------------------------------------------


async def _call(request: web.Request) -> web.StreamResponse:
    # Reached only through the router for what ``direct_routes`` did not take; the same.
    return await _call_actor(request.app[SILO], request, *_route_params(request))


async def _call_actor(
    silo: Silo, request: web.BaseRequest, type_name: str, key: str, method: str
) -> web.Response:
    args, idempotency_key, timeout = await _invocation(silo, request, type_name, key, method)
    # An actor active here is called as the link calls it: queued at once, one waiter.
    found = silo.call_nowait(type_name, key, method, args, idempotency_key, timeout, 0, ())
    if found is not None:
        result = await silo.replies.until(*found)
    else:
        result = await silo.call(
            type_name, key, method, args, idempotency_key=idempotency_key, timeout=timeout
        )
    return _reply(silo, request, {"result": result})


async def _tell(request: web.Request) -> web.StreamResponse:
    return await _tell_actor(request.app[SILO], request, *_route_params(request))


async def _tell_actor(
    silo: Silo, request: web.BaseRequest, type_name: str, key: str, method: str
) -> web.Response:
    args, idempotency_key, timeout = await _invocation(silo, request, type_name, key, method)
    found = silo.tell_nowait(type_name, key, method, args, idempotency_key, timeout, 0)
    if found is not None:
        message_id = await silo.replies.until(*found)
    else:
        message_id = await silo.tell(
            type_name, key, method, args, message_id=idempotency_key, timeout=timeout
        )
    return _reply(silo, request, {"message_id": message_id}, status=202)


async def _invocation(
    silo: Silo, request: web.BaseRequest, type_name: str, key: str, method: str
) -> tuple[dict[str, Any], str | None, float | None]:
    """A call's or tell's arguments, idempotency key and timeout, each checked; an unknown
    type or method is a 404 before the body (which would be discarded) is read."""
    _check_key(key)
    silo.resolve(type_name, method)
    args = await _read_args(request, silo)
    return args, _idempotency_key(request), _timeout(request, silo)


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be a number in [{low}, {high}]",
                         {"field": name})  # fmt: skip
    return value


_INTEGER = re.compile(r"-?[0-9]{1,19}")
MAX_OFFSET = 2**62  # stream offsets a reader may ask to start after
MAX_ITEMS = 1000  # stream items one long-poll read returns at most


def _integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = int(raw) if _INTEGER.fullmatch(raw) else None
    if value is None or not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be an integer in [{low}, {high}]",
                         {"field": name})  # fmt: skip
    return value


def _actor_params(request: web.Request) -> tuple[str, str, str]:
    info = request.match_info
    key = info["key"]
    problem = wire.key_problem(key)
    if problem is not None:
        raise BadRequest(problem, {"field": "key"})
    return info["type"], key, info["name"]


async def _event(request: web.Request) -> web.Response:
    """The latest value of an event; ``?wait=S`` waits up to S seconds for a first one."""
    silo = request.app[SILO]
    type_name, key, name = _actor_params(request)
    wait = _number(request, "wait", 0.0, 0.0, silo.settings.max_call_timeout)
    reply = await silo.get_event(type_name, key, name, wait)
    if not reply["found"]:
        raise NotFound(f"event {name!r} of {type_name}/{key} has no value yet", {"field": "name"})
    return _respond(request, {"value": reply["value"]})


async def _stream_items(request: web.Request) -> web.Response:
    """One long-poll read: items after ``?after=N`` (default -1: from the start)."""
    silo = request.app[SILO]
    type_name, key, name = _actor_params(request)
    after = _integer(request, "after", -1, -1, MAX_OFFSET)
    limit = _integer(request, "limit", MAX_ITEMS, 1, MAX_ITEMS)
    wait = _number(request, "wait", 0.0, 0.0, silo.settings.max_call_timeout)
    reply = await silo.read_stream(type_name, key, name, after=after, limit=limit, wait=wait)
    return _respond(request, reply)


# A streaming response ends after this long even if the stream has not; the client resumes
# from its last offset. Bounds how long one connection and one task are held.
MAX_STREAM_SECONDS = 300.0


async def _stream(request: web.Request) -> web.StreamResponse:
    """The stream from ``?after=N`` on, as it grows, until it closes (or for ``?wait=S``
    seconds at most): NDJSON lines ``{"offset", "item"}`` then ``{"closed": true}``, or
    server-sent events with ``Accept: text/event-stream`` (``id: offset``, ``data: item``;
    ``event: end``)."""
    silo = request.app[SILO]
    type_name, key, name = _actor_params(request)
    after = _integer(request, "after", -1, -1, MAX_OFFSET)
    follow = _number(request, "wait", MAX_STREAM_SECONDS, 0.0, MAX_STREAM_SECONDS)
    # Validate everything before the 200 goes out: errors after it cannot change the status.
    first = await silo.read_stream(type_name, key, name, after=after, wait=0.0)
    sse = "text/event-stream" in request.headers.get("Accept", "")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream" if sse else wire.NDJSON,
            "Cache-Control": "no-cache",
            wire.RING_VERSION_HEADER: str(silo.agent.view.version),
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + follow
    reply = first
    while True:
        chunks = []
        for offset, item in reply["items"]:
            line = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
            if sse:
                chunks.append(f"id: {offset}\ndata: {line}\n\n")
            else:
                chunks.append(f'{{"offset":{offset},"item":{line}}}\n')
            after = offset
        if reply["closed"]:
            chunks.append("event: end\ndata: {}\n\n" if sse else '{"closed":true}\n')
        if chunks:
            await response.write("".join(chunks).encode())
        remaining = deadline - loop.time()
        if reply["closed"] or remaining <= 0:
            break
        reply = await silo.read_stream(type_name, key, name, after=after, wait=min(remaining, 15.0))
    await response.write_eof()
    return response


def _actor_of(request: web.Request) -> tuple[str, str]:
    key = request.match_info["key"]
    problem = wire.key_problem(key)
    if problem is not None:
        raise BadRequest(problem, {"field": "key"})
    return request.match_info["type"], key


async def _reminders_list(request: web.Request) -> web.Response:
    type_name, key = _actor_of(request)
    reminders = await request.app[SILO].reminder_admin(type_name, key, "list")
    return _respond(request, {"reminders": reminders})


async def _reminder_set(request: web.Request) -> web.Response:
    type_name, key = _actor_of(request)
    body = await _read_args(request, request.app[SILO])
    name = request.match_info["name"]
    reminder = await request.app[SILO].reminder_admin(type_name, key, "set", name, body)
    return _respond(request, reminder)


async def _reminder_cancel(request: web.Request) -> web.Response:
    type_name, key = _actor_of(request)
    name = request.match_info["name"]
    return _respond(request, await request.app[SILO].reminder_admin(type_name, key, "cancel", name))


async def _send_to_topic(request: web.Request) -> web.Response:
    """Send ``{"value": ...}`` to a topic of the actor; 202 once it is stored."""
    silo = request.app[SILO]
    type_name, key = _actor_of(request)
    body = await _read_args(request, silo)
    if set(body) != {"value"}:
        raise BadRequest('the body must be {"value": ...}', {"field": "value"})
    message_id = await silo.send_to_topic(
        type_name, key, request.match_info["topic"], body["value"],
        message_id=_idempotency_key(request), timeout=_timeout(request, silo),
    )  # fmt: skip
    return _respond(request, {"message_id": message_id}, status=202)


async def _workflow_runs(request: web.Request) -> web.Response:
    type_name, key = _actor_of(request)
    return _respond(request, {"runs": await request.app[SILO].workflow_runs(type_name, key)})


async def _healthz(request: web.Request) -> web.Response:
    return _respond(request, {"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    silo = request.app[SILO]
    if silo.ready and silo.agent.lease_valid():
        return _respond(request, {"status": "ready", "silo": silo.silo_id})
    return _respond(request, {"status": "not ready", "silo": silo.silo_id}, status=503)


async def _cluster(request: web.Request) -> web.Response:
    return _respond(request, cluster_view(request.app[SILO]))


def cluster_view(silo: Silo) -> dict[str, Any]:
    """Members, the ring version and, per partition, the index of its owner in ``members``
    (-1: none) — what a smart client needs to send each call straight to its owner."""
    view = silo.agent.view
    members = sorted(view.members, key=lambda m: m.silo)
    index = {m.silo: i for i, m in enumerate(members)}
    ring = silo.agent.ring
    owners = [index.get(ring.owner(p) or "", -1) for p in range(silo.settings.partitions)]
    counts = {m.silo: 0 for m in members}
    for p in range(silo.settings.partitions):
        owner = ring.owner(p)
        if owner is not None:
            counts[owner] = counts.get(owner, 0) + 1
    return {
        "cluster": silo.cluster,
        "silo": silo.silo_id,
        "ring_version": view.version,
        "partitions": silo.settings.partitions,
        "members": [
            {
                "id": m.silo,
                "address": m.address,
                "status": str(m.status),
                "partitions": counts.get(m.silo, 0),
            }
            for m in members
        ],
        "owners": owners,
        "stats": {
            "activations": len(silo.catalog),
            "forwarded": silo.router.forwarded,
            "received": silo.router.received,
            "client_link_requests": silo.router.client_requests,
            "fenced_writes": silo.catalog.fenced_writes,
            "handoffs": silo.rebalancer.handoffs,
            "takeovers": silo.ownership.takeovers,
            "declared_dead": silo.agent.declared_dead,
        },
    }


async def _openapi(request: web.Request) -> web.Response:
    return _respond(request, request.app[OPENAPI])
