"""Reading an actor's events and streams from the client.

``get_event`` returns the latest value of an event, waiting for a first one if asked.
``read_stream`` yields a stream's items in order while it grows, until it closes; when a
connection breaks (a silo crash, a hand-off) it resumes from the last offset it yielded,
so every item is yielded exactly once, in order.
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
    session = client._open_session()
    base = client._router.url_for(type_name, key)
    async with session.get(
        base + path,
        headers={"Accept": wire.JSON},
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
