"""The ceilings' servers: what bayou would cost if a call did nothing but travel (and persist).

``python -m bench.echo http --port P``: an aiohttp server answering the actor call route with
a fixed JSON reply — the most a Python HTTP/1.1 server on this machine can answer.

``python -m bench.echo link --port P [--redis URL]``: the link (bayou's own ``LinkServer``:
one websocket, batched msgpack frames) answering every request at once or, with
``--redis``, after one Redis append per request made durable through bayou's own
``GroupCommitter`` — every append submitted in one loop turn goes out in one pipeline, at
most ``RedisStorage.commit_batch`` of them, as the silo bounds its own commits on Redis.
That is the durable ceiling: bayou's fast path minus the actor.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import uvloop
from aiohttp import web

from bayou import codec
from bayou.runtime.transport_server import LinkServer
from bayou.storage.contract import Commit, Storage
from bayou.storage.group_commit import GroupCommitter
from bayou.storage.redis import RedisStorage, make_client


class _Appender:
    """What ``GroupCommitter`` uses of a ``Storage``: its batch bound (Redis's, as bayou's
    silo bounds its commits on Redis: the ceiling built the same way) and ``commit``, here
    a batch of appends in one pipeline."""

    commit_batch: ClassVar[int] = RedisStorage.commit_batch

    def __init__(self, url: str) -> None:
        self.client = make_client(url)

    async def commit(self, batch: Sequence[Any]) -> list[BaseException | None]:
        pipe = self.client.pipeline(transaction=False)
        for key, data in batch:
            pipe.xadd(key, {"d": data})
        await pipe.execute()
        return [None] * len(batch)


def _http_app() -> web.Application:
    reply = b'{"result":1}'

    async def call(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=reply, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/actors/{type}/{key}/{method}", call)
    app.router.add_post("/v1/actors/{type}/{key}/{method}/tell", call)
    return app


def _link_app(redis_url: str | None) -> web.Application:
    committer: GroupCommitter | None = None
    if redis_url:
        committer = GroupCommitter(cast(Storage, _Appender(redis_url)))

    async def handle(payload: Any) -> Any:
        if committer is not None:
            record = codec.pack(payload)
            await committer.submit(cast(Commit, (f"bench:echo:{payload['key']}", record)))
        return 1

    app = web.Application()
    LinkServer(handle).mount(app)
    return app


async def _serve(app: web.Application, port: int) -> None:
    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()  # until the harness ends this process


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo")
    parser.add_argument("kind", choices=["http", "link"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis")
    args = parser.parse_args(argv)
    app = _http_app() if args.kind == "http" else _link_app(args.redis)
    uvloop.run(_serve(app, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
