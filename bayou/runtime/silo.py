"""The silo: hosts activations of an app's actors and serves them over HTTP.

Start and stop run through numbered stages, so the order of storage, ownership,
activations and HTTP is written down in one place::

    start: 10 storage   20 group commit   30 ownership   40 catalog   50 wake inboxes   60 http
    stop:  60 http (not ready, drain requests)   40 deactivate all (snapshots)
           30 release partitions   20 flush commits   10 close storage
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bayou.clock import Clock
from bayou.errors import BadRequest, CallTimeout, InvalidArguments, UnknownActorType, UnknownMethod
from bayou.model import ActorSpec, HandlerSpec
from bayou.runtime.activation import Activation, Message
from bayou.runtime.app import App
from bayou.runtime.calls import ActorCalls
from bayou.runtime.catalog import Catalog
from bayou.storage.contract import ActorKey, Storage
from bayou.storage.group_commit import GroupCommitter

log = logging.getLogger("bayou.silo")


class Silo:
    """One silo process's runtime: call ``start()``, serve, then ``stop()``.

    With no membership service configured the silo runs alone: every other silo id found
    in storage belongs to a process that is gone (the store's file lock proves it).
    """

    def __init__(
        self,
        app: App,
        storage: Storage,
        *,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        advertise_host: str | None = None,
        silo_id: str | None = None,
    ) -> None:
        from bayou.placement.ownership import PartitionOwnership

        self.app = app
        self.settings = app.settings
        self.storage = storage
        self.clock = clock or Clock()
        self.host = host
        self.port = port
        self.advertise_host = advertise_host or (
            host if host not in ("0.0.0.0", "::") else socket.gethostname()
        )
        self.silo_id = silo_id or f"silo-{uuid.uuid4().hex[:12]}"
        self.committer = GroupCommitter(storage)
        self.ownership = PartitionOwnership(storage, self.silo_id, is_dead=self._is_dead)
        self.catalog = Catalog(app, storage, self.committer, self.ownership, self.clock)
        self.catalog.calls = ActorCalls(self)
        self.ready = False
        self.stopping = False
        self._runner: web.AppRunner | None = None

    def _is_dead(self, silo: str) -> bool:
        return silo != self.silo_id

    @property
    def address(self) -> str:
        return f"http://{self.advertise_host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, serve_http: bool = True) -> None:
        await self.storage.open()  # 10
        self.catalog.start()  # 40
        await self._wake_inboxes()  # 50
        if serve_http:  # 60
            from bayou.runtime.http import build_http_app

            self._runner = web.AppRunner(
                build_http_app(self), access_log=None, handle_signals=False, shutdown_timeout=5.0
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
            await site.start()
            if self.port == 0:
                self.port = int(self._runner.addresses[0][1])
        self.ready = True
        log.info("silo %s serving %s at %s", self.silo_id, sorted(self.app.actors), self.address)

    async def _wake_inboxes(self) -> None:
        """Activate actors with tells that were accepted but not yet processed before a restart."""
        waiting = await self.storage.inbox_actors(range(self.settings.partitions))

        async def wake(actor: ActorKey) -> None:
            spec = self.app.spec(actor.type)
            if spec is None:
                log.warning("inbox of %s waits, but this app has no such actor type", actor)
                return
            try:
                await self.catalog.get(spec, actor.key)
            except Exception:
                log.exception("could not activate %s to drain its inbox", actor)

        for start in range(0, len(waiting), 64):
            await asyncio.gather(*(wake(actor) for actor in waiting[start : start + 64]))

    async def stop(self) -> None:
        """Stop serving, finish turns in flight, snapshot and release everything."""
        if self.stopping:
            return
        self.stopping = True
        self.ready = False
        if self._runner is not None:  # 60
            await self._runner.cleanup()
        await self.catalog.stop()  # 40
        await self.ownership.release_all()  # 30
        await self.committer.close()  # 20
        await self.storage.close()  # 10
        log.info("silo %s stopped", self.silo_id)

    async def abandon(self) -> None:
        """Stop the way a killed process does: no snapshots, no release, storage left open.

        For tests of crash recovery; what survives is exactly what was committed.
        """
        self.stopping = True
        self.ready = False
        if self._runner is not None:
            await self._runner.cleanup()
        await self.catalog.abandon()

    # -- dispatch --------------------------------------------------------------------------

    def resolve(self, type_name: str, method: str) -> tuple[ActorSpec, HandlerSpec]:
        spec = self.app.spec(type_name)
        if spec is None:
            raise UnknownActorType(
                f"no actor type {type_name!r} on this silo", {"known": sorted(self.app.actors)}
            )
        handler = spec.handlers.get(method)
        if handler is None:
            raise UnknownMethod(
                f"actor type {type_name!r} has no handler {method!r}",
                {"known": sorted(spec.handlers)},
            )
        return spec, handler

    @staticmethod
    def validate(spec: ActorSpec, handler: HandlerSpec, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return handler.validate_args(args)
        except ValidationError as exc:
            problems = [
                {
                    "field": ".".join(str(part) for part in err["loc"]) or "(body)",
                    "message": err["msg"],
                }
                for err in exc.errors(include_url=False)
            ]
            summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise InvalidArguments(
                f"invalid arguments for {spec.type_name}.{handler.name}: {summary}", problems
            ) from None

    async def call(
        self,
        type_name: str,
        key: str,
        method: str,
        args: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run a handler (exclusive or query) and return its plain reply."""
        spec, handler = self.resolve(type_name, method)
        kwargs = self.validate(spec, handler, args)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.settings.call_timeout)
        activation = await self._activation(spec, key, deadline)
        if handler.kind == "query":
            return await _until(asyncio.ensure_future(activation.query(handler, kwargs)), deadline)
        message = Message(method, args, kwargs, idempotency_key)
        return await _until(activation.call(message), deadline)

    async def tell(
        self,
        type_name: str,
        key: str,
        method: str,
        args: dict[str, Any],
        *,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Store a one-way message in the actor's inbox; returns its id once it is durable."""
        spec, handler = self.resolve(type_name, method)
        if handler.kind == "query":
            raise BadRequest(f"{type_name}.{method} is a query; only exclusive handlers take tells")
        self.validate(spec, handler, args)
        message_id = message_id or uuid.uuid4().hex
        deadline = asyncio.get_running_loop().time() + (timeout or self.settings.call_timeout)
        activation = await self._activation(spec, key, deadline)
        message = Message(method, args, None, message_id)
        await _until(asyncio.ensure_future(activation.accept_tell(message)), deadline)
        return message_id

    async def _activation(self, spec: ActorSpec, key: str, deadline: float) -> Activation:
        activation: Activation = await _until(
            asyncio.ensure_future(self.catalog.get(spec, key)), deadline
        )
        return activation


async def _until(fut: asyncio.Future[Any], deadline: float) -> Any:
    """Wait for ``fut`` until ``deadline`` without cancelling it: a turn, once queued or
    started, runs to its commit even when its caller gave up (a retry finds its record)."""
    if fut.done():
        return fut.result()
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        return await asyncio.wait_for(asyncio.shield(fut), max(remaining, 0.0))
    except TimeoutError:
        fut.add_done_callback(_consume)
        raise CallTimeout("no reply before the deadline; the call may still complete") from None


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
