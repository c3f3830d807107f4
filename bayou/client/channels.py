"""The client side of events, streams, topics, reminders and workflow history.

``get_event`` returns the latest value of an event, waiting for a first one if asked.
``read_stream`` yields a stream's items in order while it grows, until it closes; when a
connection breaks (a silo crash, a hand-off) it resumes from the last offset it yielded,
so every item is yielded exactly once, in order. ``send`` queues a message on a topic of
an actor (a workflow takes it with ``ctx.receive``); the reminder functions register,
list and cancel durable reminders from outside the actor.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp

from bayou import wire
from bayou.client import protocol
from bayou.errors import RETRYABLE, BayouError, CallTimeout, NotFound, SiloUnreachable

if TYPE_CHECKING:
    from bayou.client.client import Client

_MISSING: Any = object()
_RETRY_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, *RETRYABLE)
_RESUME_PAUSE = 0.05


def _path(route: str, type_name: str, key: str, name: str) -> str:
    quote = urllib.parse.quote
    return route.format(
        type=quote(type_name, safe=""), key=quote(key, safe=""), name=quote(name, safe="")
    )


async def _get_json(client: Client, type_name: str, key: str, path: str, timeout: float) -> Any:
    return await _request(client, "GET", type_name, key, path, timeout)


async def _request(
    client: Client,
    method: str,
    type_name: str,
    key: str,
    path: str,
    timeout: float,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    session = client._open_session()
    base = client._router.url_for(type_name, key)
    async with session.request(
        method,
        base + path,
        json=body,
        headers={"Accept": wire.JSON, **(headers or {})},
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        raw = await response.read()
        if 200 <= response.status < 300:
            return protocol.decode_success(raw, response.content_type, path)
        raise protocol.decode_error(raw, response.content_type, response.status)


async def get_event(
    client: Client,
    type_name: str,
    key: str,
    name: str,
    *,
    wait: float = 0.0,
    default: Any = _MISSING,
) -> Any:
    """The event's latest value; waits up to ``wait`` s for a first one. Without a value:
    ``default`` if given, else ``NotFound``."""
    path = _path(wire.EVENT_ROUTE, type_name, key, name) + f"?wait={wait:.3f}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait + client.timeout
    while True:
        try:
            body = await _get_json(client, type_name, key, path, deadline - loop.time())
            return body["value"]
        except NotFound:
            if default is _MISSING:
                raise
            return default
        except _RETRY_ERRORS as exc:
            if loop.time() + _RESUME_PAUSE >= deadline:
                raise CallTimeout(f"event {name!r} of {type_name}/{key}: {exc!r}") from exc
            client._router.stale(client._open_session())
            await asyncio.sleep(_RESUME_PAUSE)


async def read_stream(
    client: Client, type_name: str, key: str, name: str, *, after: int = -1
) -> AsyncIterator[tuple[int, Any]]:
    """``(offset, item)`` pairs after ``after``, as they are written, until the stream
    closes. Survives broken connections by resuming after the last offset yielded; gives up
    (``SiloUnreachable``) only after ``client.timeout`` seconds without any connection."""
    base_path = _path(wire.STREAM_ROUTE, type_name, key, name)
    loop = asyncio.get_running_loop()
    outage_started: float | None = None
    while True:
        session = client._open_session()
        url = client._router.url_for(type_name, key) + base_path + f"?after={after}"
        try:
            async with session.get(
                url,
                headers={"Accept": wire.NDJSON},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=60.0),
            ) as response:
                if response.status != 200:
                    raw = await response.read()
                    raise protocol.decode_error(raw, response.content_type, response.status)
                outage_started = None
                async for line in response.content:
                    if not line.strip():
                        continue
                    entry = json.loads(line)
                    if entry.get("closed"):
                        return
                    after = int(entry["offset"])
                    yield after, entry["item"]
            continue  # the silo ended the response (its time limit): resume
        except BayouError as exc:
            if not isinstance(exc, RETRYABLE):
                raise
            failure: BaseException = exc
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            failure = exc
        now = loop.time()
        outage_started = outage_started if outage_started is not None else now
        if now - outage_started > client.timeout:
            raise SiloUnreachable(f"stream {name!r} of {type_name}/{key}: {failure!r}") from failure
        client._router.stale(client._open_session())
        await asyncio.sleep(_RESUME_PAUSE)


async def _retrying(client: Client, what: str, attempt: Any) -> Any:
    """Run ``attempt()`` until it answers, retrying connection failures and 503/504 (each
    request is idempotent: a read, or a write carrying its own id) within the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + client.timeout
    while True:
        try:
            return await attempt(deadline - loop.time())
        except _RETRY_ERRORS as exc:
            if loop.time() + _RESUME_PAUSE >= deadline:
                raise CallTimeout(f"{what}: {exc!r}") from exc
            client._router.stale(client._open_session())
            await asyncio.sleep(_RESUME_PAUSE)


async def send(
    client: Client,
    type_name: str,
    key: str,
    topic: str,
    value: Any,
    *,
    message_id: str | None = None,
) -> str:
    """Queue ``value`` on ``topic`` of the actor (exactly once, whatever the retries)."""
    message_id = message_id or protocol.new_idempotency_key()
    path = _path(wire.TOPIC_ROUTE.replace("{topic}", "{name}"), type_name, key, topic)
    headers = {wire.IDEMPOTENCY_KEY: message_id}

    async def attempt(timeout: float) -> Any:
        return await _request(
            client, "POST", type_name, key, path, timeout, {"value": value}, headers
        )

    body = await _retrying(client, f"send to {type_name}/{key} topic {topic!r}", attempt)
    return str(body["message_id"])


async def reminders(client: Client, type_name: str, key: str) -> list[dict[str, Any]]:
    path = wire.REMINDERS_ROUTE.format(
        type=urllib.parse.quote(type_name, safe=""), key=urllib.parse.quote(key, safe="")
    )

    async def attempt(timeout: float) -> Any:
        return await _get_json(client, type_name, key, path, timeout)

    body = await _retrying(client, f"reminders of {type_name}/{key}", attempt)
    return list(body["reminders"])


async def set_reminder(
    client: Client,
    type_name: str,
    key: str,
    name: str,
    method: str,
    *,
    due_in: float | None = None,
    due_at: float | None = None,
    period: float | None = None,
    args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register (or replace) reminder ``name``: ``method(**args)`` runs when it is due."""
    path = _path(wire.REMINDER_ROUTE, type_name, key, name)
    request: dict[str, Any] = {"method": method, "args": args or {}}
    for field, value in (("due_in", due_in), ("due_at", due_at), ("period", period)):
        if value is not None:
            request[field] = value

    async def attempt(timeout: float) -> Any:
        return await _request(client, "PUT", type_name, key, path, timeout, request)

    body: dict[str, Any] = await _retrying(client, f"reminder {name!r}", attempt)
    return body


async def cancel_reminder(client: Client, type_name: str, key: str, name: str) -> bool:
    path = _path(wire.REMINDER_ROUTE, type_name, key, name)

    async def attempt(timeout: float) -> Any:
        return await _request(client, "DELETE", type_name, key, path, timeout)

    body = await _retrying(client, f"cancel reminder {name!r}", attempt)
    return bool(body["cancelled"])


async def workflow_runs(client: Client, type_name: str, key: str) -> list[dict[str, Any]]:
    """The actor's archived workflow runs with their lineage, oldest first."""
    path = wire.WORKFLOWS_ROUTE.format(
        type=urllib.parse.quote(type_name, safe=""), key=urllib.parse.quote(key, safe="")
    )

    async def attempt(timeout: float) -> Any:
        return await _get_json(client, type_name, key, path, timeout)

    body = await _retrying(client, f"workflow runs of {type_name}/{key}", attempt)
    return list(body["runs"])
