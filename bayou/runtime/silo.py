"""The silo: hosts activations of an app's actors, serves them over HTTP, joins the ring.

Start and stop run through numbered stages, so the order of storage, membership,
activations and HTTP is written down in one place::

    start: 10 storage + membership   20 http (not ready)   30 join as `joining`
           40 catalog   50 enter the ring (`active`): hand-offs arrive, inboxes wake
           60 ready
    stop:  60 not ready   50 leave the ring (`shutting_down`): hand everything off
           40 deactivate what is left   30 leave membership (`dead`)   20 http
           10 flush commits, close links, membership and storage

With no membership store configured the silo runs alone: the same code path with an
in-process membership, a ring of one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from typing import Any

from aiohttp import web

from bayou import codec
from bayou.clock import Clock
from bayou.errors import (
    RETRYABLE,
    BadRequest,
    ConfigurationError,
    Unavailable,
    UnknownActorType,
)
from bayou.ids import unique_id
from bayou.model import ActorSpec, HandlerSpec
from bayou.placement.agent import MembershipAgent
from bayou.placement.membership import Membership, SiloDeclaredDead
from bayou.placement.memory_membership import MemoryMembership
from bayou.placement.ownership import PartitionOwnership
from bayou.runtime import metrics
from bayou.runtime.activation import Activation, Message
from bayou.runtime.app import App
from bayou.runtime.calls import ActorCalls
from bayou.runtime.catalog import Catalog
from bayou.runtime.dispatch import ReplyWaits, check_recordable, resolve, until, validate
from bayou.runtime.effects import check_channel_name
from bayou.runtime.invocation import SEND_METHOD
from bayou.runtime.logs import awaiting
from bayou.runtime.rebalance import Rebalancer
from bayou.runtime.reminders import ReminderService, describe, reminder_from_request, visible
from bayou.runtime.routing import Router
from bayou.runtime.workflow_commits import HISTORY_INDEX, history_key
from bayou.storage.contract import ActorKey, Reminder, Storage
from bayou.storage.group_commit import GroupCommitter
from bayou.wire import partition_of

log = logging.getLogger("bayou.silo")

CLOSE_BUDGET = 10.0  # seconds to close HTTP, links, commits and stores after the drain
# Seconds a silo declared dead takes to drop its activations and writes in flight before
# it exits anyway (well within the time a liveness probe would allow).
ABANDON_BUDGET = 10.0
# Waking inboxes that storage could not list (or whose actors could not be activated) is
# retried after this long, doubling up to the maximum: a Redis restart takes seconds.
WAKE_RETRY_FIRST = 0.5
WAKE_RETRY_MAX = 5.0


class Silo:
    """One silo process's runtime: ``start()``, serve, then ``stop()`` (or fail-stop)."""

    def __init__(
        self,
        app: App,
        storage: Storage,
        *,
        membership: Membership | None = None,
        cluster: str | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        advertise_host: str | None = None,
        silo_id: str | None = None,
        secret: str | None = None,
    ) -> None:
        self.app = app
        # The cluster's shared secret: required on the HTTP API and on silo links when set.
        self.secret = secret or None
        self.settings = settings = app.settings
        self.storage = storage
        self.cluster = cluster
        self.clock = clock or Clock()
        self.host = host
        self.port = port
        wildcard = host in ("0.0.0.0", "::", "")
        self.advertise_host = advertise_host or (socket.gethostname() if wildcard else host)
        self.silo_id = silo_id or f"silo-{uuid.uuid4().hex[:12]}"
        self.standalone = membership is None
        self.membership = membership or MemoryMembership(self.clock)
        self.agent = MembershipAgent(
            self.membership,
            self.silo_id,
            self.address,
            partitions=settings.partitions,
            clock=self.clock,
            # Alone, nobody can take our partitions: a stalled loop must not stop us.
            lease=settings.lease if membership is not None else 365 * 86400.0,
            heartbeat=settings.heartbeat_interval,
        )
        self.committer = GroupCommitter(storage, max_batch=settings.commit_batch)
        self.ownership = PartitionOwnership(
            storage,
            self.silo_id,
            is_dead=self.agent.is_dead,
            wants=self.owns_partition,
            clock=self.clock,
            claim_wait=settings.claim_wait,
        )
        self.catalog = Catalog(app, storage, self.committer, self.ownership, self.clock)
        self.catalog.calls = ActorCalls(self)
        self.catalog.silo = self
        self.router = Router(self)
        self.reminders = ReminderService(self, settings.reminder_interval)
        self.rebalancer = Rebalancer(self)
        self.agent.on_view(self.rebalancer.on_view)
        self.agent.on_loss(self._fail_stop)
        self.ready = False
        self.stopping = False
        self.failed = asyncio.Event()
        self._abandoning: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        # The loop the silo runs in, kept from start(): asking asyncio for it is a getpid
        # system call on Python 3.11, and every call needs a deadline.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replies: ReplyWaits | None = None

    @property
    def replies(self) -> ReplyWaits:
        """Where the HTTP routes wait for the turns they queued, until their deadlines."""
        replies = self._replies
        if replies is None:
            replies = self._replies = ReplyWaits(self._loop or asyncio.get_running_loop())
        return replies

    @property
    def address(self) -> str:
        host = self.advertise_host
        if ":" in host and not host.startswith("["):  # an IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def owns_partition(self, partition: int) -> bool:
        return self.agent.ring.owner(partition) == self.silo_id

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, serve_http: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        await self.storage.open()  # 10
        await self.membership.open()
        await self._agree_on_constants()
        if serve_http:  # 20
            await self._serve_http()
        self.agent.address = self.address
        await self.agent.join()  # 30
        self.catalog.start()  # 40
        await self.agent.activate()  # 50
        self.reminders.start()
        self.ready = True  # 60
        log.info(
            "silo %s serving %s at %s (%s)",
            self.silo_id,
            sorted(self.app.actors),
            self.address,
            "standalone" if self.standalone else f"cluster {self.cluster}",
        )

    async def _agree_on_constants(self) -> None:
        partitions = str(self.settings.partitions)
        agreed = await self.membership.agree("partitions", partitions)
        if agreed != partitions:
            raise ConfigurationError(
                f"cluster {self.cluster} has {agreed} partitions for its whole life; this "
                f"silo is configured with {partitions} (set BAYOU_PARTITIONS={agreed})"
            )

    async def _serve_http(self) -> None:
        from bayou.runtime.http import build_http_app, direct_routes
        from bayou.runtime.http_server import HttpRunner

        self._runner = HttpRunner(
            build_http_app(self),
            front=direct_routes,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=5.0,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Drain: leave the ring, hand every partition off, then leave membership and exit.

        Bounded by ``drain_timeout``; whatever is not handed off by then is left to the
        journal (every acknowledged turn is in it) and to the next owner's takeover.
        """
        if self.stopping:
            return
        self.stopping = True
        self.ready = False  # 60
        await self.reminders.stop()
        try:
            await asyncio.wait_for(self._drain(), self.settings.drain_timeout)
        except TimeoutError:
            log.error(
                "drain did not finish in %.0fs; leaving the rest", self.settings.drain_timeout
            )
        except Exception:
            log.exception("drain failed; leaving the rest to the next owners")
        # Leaving and closing are bounded too, so a silo always exits within
        # drain_timeout + CLOSE_BUDGET (the Kubernetes grace period allows for it), even
        # when Redis is unreachable at that moment: what is not closed cleanly is what a
        # crash would leave, and the journal covers it.
        try:
            await asyncio.wait_for(self.agent.leave(), 3.0)  # 30
        except Exception:  # a timeout, or membership unreachable
            log.warning("could not mark silo %s dead; its lease will expire", self.silo_id)
        try:
            await asyncio.wait_for(self._close(), CLOSE_BUDGET)
        except TimeoutError:
            log.error("closing did not finish in %.0fs; exiting anyway", CLOSE_BUDGET)

    async def _drain(self) -> None:
        if self.agent.lost is None:
            try:
                await self.agent.leave_ring()  # 50: peers stop routing here
            except SiloDeclaredDead:
                return
            await self.rebalancer.settle()
        await self.catalog.stop()  # 40
        await self.ownership.release_all()
        if self.agent.lost is None and not self.standalone:
            # Peers learn that we left within a heartbeat; until then they may still send
            # calls here, which we forward to the new owners instead of refusing.
            await asyncio.sleep(2 * self.settings.heartbeat_interval)

    async def _close(self) -> None:
        await self.rebalancer.stop()
        if self._runner is not None:  # 20
            await self._runner.cleanup()
            self._runner = None
        await self.router.close()
        await self.committer.close()  # 10
        await self.membership.close()
        await self.storage.close()
        log.info("silo %s stopped", self.silo_id)

    def _fail_stop(self, reason: str) -> None:
        """Lease lost or declared dead: stop serving at once, write nothing more."""
        self.ready = False
        self.stopping = True
        # Kept here: the event loop holds tasks only weakly.
        self._abandoning = asyncio.get_running_loop().create_task(self._abandon_after_loss(reason))

    async def _abandon_after_loss(self, reason: str) -> None:
        """Drop everything, then let the process exit (``failed``), within ABANDON_BUDGET
        whatever hangs or fails: nothing a silo declared dead does matters any more (its
        writes are fenced), but a process that stays up after it is dead is a hang."""
        abandoning = asyncio.ensure_future(self._abandon())
        done, _ = await asyncio.wait({abandoning}, timeout=ABANDON_BUDGET)
        if not done:
            log.error(
                "silo %s: abandoning did not finish in %.0fs; exiting anyway. It waits in:\n%s",
                self.silo_id,
                ABANDON_BUDGET,
                awaiting(abandoning),
            )
            abandoning.cancel()
        elif abandoning.exception() is not None:
            log.error("silo %s: abandoning failed", self.silo_id, exc_info=abandoning.exception())
        log.error(
            "silo %s abandoned its activations (%s); fenced writes rejected: %d",
            self.silo_id,
            reason,
            self.catalog.fenced_writes,
        )
        self.failed.set()

    async def _abandon(self) -> None:
        await self.reminders.stop()
        await self.catalog.abandon()
        await self.agent.stop()
        # Writes already on their way get their verdict (fenced, if a new owner took over).
        await self.committer.close()

    async def abandon(self) -> None:
        """Stop the way a killed process does: no snapshots, no release, storage left open.

        For tests of crash recovery; what survives is exactly what was committed.
        """
        self.stopping = True
        self.ready = False
        await self.reminders.stop()
        await self.agent.stop()
        await self.rebalancer.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.catalog.abandon()
        await self.router.close()

    # -- dispatch --------------------------------------------------------------------------

    def resolve(self, type_name: str, method: str) -> tuple[ActorSpec, HandlerSpec]:
        return resolve(self.app, type_name, method)

    async def call(
        self,
        type_name: str,
        key: str,
        method: str,
        args: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        hops: int = 0,
        chain: tuple[str, ...] = (),
    ) -> Any:
        """Run a handler (exclusive or query) wherever its actor lives; its plain reply.

        ``chain`` lists the actors whose exclusive turns wait on this call (deadlock
        detection); it travels with the call when it is forwarded."""
        spec, handler = self.resolve(type_name, method)
        if hops:  # measured where it entered the cluster
            return await self._call(spec, handler, key, args, idempotency_key, timeout, hops, chain)
        telemetry = metrics.telemetry_of(self)
        started = metrics.now()
        try:
            result = await self._call(spec, handler, key, args, idempotency_key, timeout, 0, chain)
        except BaseException as exc:
            telemetry.call_failed(type_name, method, key, started, exc)
            raise
        telemetry.call_done(type_name, method, started)
        return result

    def call_nowait(
        self,
        type_name: str,
        key: str,
        method: str,
        args: dict[str, Any],
        idempotency_key: str | None,
        timeout: float | None,
        hops: int,
        chain: tuple[str, ...],
    ) -> tuple[asyncio.Future[Any], float] | None:
        """``call`` without a task, for an actor active on this silo: the plain reply's
        future and the loop time by which the caller wants it. None when the call needs
        ``call`` (its actor is elsewhere or not loaded, or a stateless worker or workflow).

        The caller answers ``CallTimeout`` at the deadline; the turn goes on regardless.
        """
        spec, handler = self.resolve(type_name, method)
        kind = handler.kind
        if kind == "workflow" or spec.is_stateless:
            return None
        activation = self.catalog.peek(type_name, key)
        if activation is None:
            return None
        try:
            kwargs = validate(spec, handler, args)
            # The activation knows its partition: no hash of the key on this path.
            if self._owner(activation.actor_key.partition) != self.silo_id:
                return None
        except BaseException as exc:
            if not hops:
                metrics.telemetry_of(self).call_failed(type_name, method, key, metrics.now(), exc)
            raise
        deadline = self._deadline(timeout)
        future: asyncio.Future[Any]
        if kind == "query":
            loop = self._loop or asyncio.get_running_loop()
            future = loop.create_task(activation.query(handler, kwargs))
        else:
            future = activation.call(Message(method, args, kwargs, idempotency_key, chain=chain))
        if not hops:  # measured where it entered the cluster
            metrics.telemetry_of(self).watch_call(type_name, method, key, deadline, future)
        return future, deadline

    async def _call(
        self,
        spec: ActorSpec,
        handler: HandlerSpec,
        key: str,
        args: dict[str, Any],
        idempotency_key: str | None,
        timeout: float | None,
        hops: int,
        chain: tuple[str, ...],
    ) -> Any:
        type_name, method = spec.type_name, handler.name
        kwargs = validate(spec, handler, args)
        deadline = self._deadline(timeout)
        if spec.is_stateless:  # always local: the work spreads over the silos called
            pool = self.catalog.worker_pool(spec)
            return await until(asyncio.ensure_future(pool.call(key, handler, kwargs)), deadline)
        owner = self._owner_of(type_name, key)
        if owner != self.silo_id:
            payload = _request("call", type_name, key, method=method, args=args)
            payload["idem"] = idempotency_key
            if chain:
                payload["chain"] = list(chain)
            return await self.router.forward(owner, payload, deadline, hops)
        activation = await self._activation(spec, key, deadline)
        if handler.kind == "workflow":
            # A run starts from a durable inbox message: its id is the caller's key.
            run_id = idempotency_key or uuid.uuid4().hex
            start = Message(method, args, None, run_id)
            await until(asyncio.ensure_future(activation.accept_tell(start)), deadline)
            return await until(activation.await_run(run_id, ""), deadline)
        if handler.kind == "query":
            return await until(asyncio.ensure_future(activation.query(handler, kwargs)), deadline)
        message = Message(method, args, kwargs, idempotency_key, chain=chain)
        return await until(activation.call(message), deadline)

    async def tell(
        self,
        type_name: str,
        key: str,
        method: str,
        args: dict[str, Any],
        *,
        message_id: str | None = None,
        timeout: float | None = None,
        hops: int = 0,
        reminder: Reminder | None = None,
    ) -> str:
        """Store a one-way message in the actor's inbox; returns its id once it is durable."""
        if method == SEND_METHOD:
            return await self.send_to_topic(
                type_name, key, str(args.get("topic")), args.get("value"),
                message_id=message_id, timeout=timeout, hops=hops,
            )  # fmt: skip
        spec, handler = self.resolve(type_name, method)
        if hops:  # measured where it entered the cluster
            return await self._tell(spec, handler, key, args, message_id, timeout, hops, reminder)
        telemetry = metrics.telemetry_of(self)
        try:
            result = await self._tell(spec, handler, key, args, message_id, timeout, 0, reminder)
        except BaseException as exc:
            telemetry.tell_failed(type_name, method, key, exc)
            raise
        telemetry.tell_done(type_name, method)
        return result

    def tell_nowait(
        self,
        type_name: str,
        key: str,
        method: str,
        args: dict[str, Any],
        message_id: str | None,
        timeout: float | None,
        hops: int,
    ) -> tuple[asyncio.Future[Any], float] | None:
        """``tell`` without a task of the caller's, for an actor active on this silo: the
        future of the message id (resolved once the message is stored) and the caller's
        deadline. None when the tell needs ``tell`` (elsewhere, not loaded, a topic send,
        or one that ``tell`` refuses)."""
        if method == SEND_METHOD:
            return None
        spec, handler = self.resolve(type_name, method)
        if handler.kind == "query" or spec.is_stateless:
            return None  # refused by tell, with the reason
        activation = self.catalog.peek(type_name, key)
        if activation is None:
            return None
        try:
            validate(spec, handler, args)
            if self._owner(activation.actor_key.partition) != self.silo_id:
                return None
        except BaseException as exc:
            if not hops:
                metrics.telemetry_of(self).tell_failed(type_name, method, key, exc)
            raise
        message = Message(method, args, None, message_id or unique_id())
        deadline = self._deadline(timeout)
        loop = self._loop or asyncio.get_running_loop()
        future = loop.create_task(_stored(activation, message))
        if not hops:  # measured where it entered the cluster
            metrics.telemetry_of(self).watch_tell(type_name, method, key, deadline, future)
        return future, deadline

    async def _tell(
        self,
        spec: ActorSpec,
        handler: HandlerSpec,
        key: str,
        args: dict[str, Any],
        message_id: str | None,
        timeout: float | None,
        hops: int,
        reminder: Reminder | None,
    ) -> str:
        type_name, method = spec.type_name, handler.name
        if handler.kind == "query":
            raise BadRequest(f"{type_name}.{method} is a query; only exclusive handlers take tells")
        if spec.is_stateless:
            raise BadRequest(f"{type_name} is a stateless worker: it has no inbox; call it")
        validate(spec, handler, args)
        message_id = message_id or uuid.uuid4().hex
        deadline = self._deadline(timeout)
        owner = self._owner_of(type_name, key)
        if owner != self.silo_id:
            if reminder is not None:  # fired by a silo that no longer owns the actor
                raise Unavailable(f"{type_name}/{key} moved; its new owner fires the reminder")
            payload = _request("tell", type_name, key, method=method, args=args)
            payload["idem"] = message_id
            result: str = await self.router.forward(owner, payload, deadline, hops)
            return result
        activation = await self._activation(spec, key, deadline)
        message = Message(method, args, None, message_id, reminder=reminder)
        await until(asyncio.ensure_future(activation.accept_tell(message)), deadline)
        return message_id

    async def get_event(
        self, type_name: str, key: str, name: str, wait: float, *, hops: int = 0
    ) -> dict[str, Any]:
        """``{"found": bool, "value": ...}``: the event's latest value, waiting up to ``wait``
        seconds for a first one (on the owner silo, which is woken by the commit)."""
        self._known_type(type_name)
        check_channel_name(name)
        wait = min(max(wait, 0.0), self.settings.max_call_timeout)
        owner = self._owner_of(type_name, key)
        if owner != self.silo_id:
            payload = _request("event", type_name, key, name=name, wait=wait)
            reply: dict[str, Any] = await self.router.forward(
                owner, payload, self._deadline(wait + 5.0), hops
            )
            return reply
        found, value = await self.catalog.channels.get_event(
            self.catalog.actor_key(type_name, key), name, wait
        )
        return {"found": found, "value": value}

    async def read_stream(
        self,
        type_name: str,
        key: str,
        name: str,
        *,
        after: int = -1,
        limit: int = 1000,
        wait: float = 0.0,
        hops: int = 0,
    ) -> dict[str, Any]:
        """``{"items": [[offset, item], ...], "closed": bool, "next": offset}``: items after
        ``after``, waiting up to ``wait`` seconds for the first (long poll)."""
        self._known_type(type_name)
        check_channel_name(name)
        wait = min(max(wait, 0.0), self.settings.max_call_timeout)
        owner = self._owner_of(type_name, key)
        if owner != self.silo_id:
            payload = _request(
                "stream", type_name, key, name=name, after=after, limit=limit, wait=wait
            )
            reply: dict[str, Any] = await self.router.forward(
                owner, payload, self._deadline(wait + 5.0), hops
            )
            return reply
        return await self.catalog.channels.read_stream(
            self.catalog.actor_key(type_name, key), name, after, limit, wait
        )

    async def reminder_admin(
        self,
        type_name: str,
        key: str,
        action: str,
        name: str | None = None,
        request: dict[str, Any] | None = None,
        *,
        hops: int = 0,
    ) -> Any:
        """List (``list``), register (``set``) or cancel (``cancel``) an actor's reminders
        from outside the actor, on the silo that owns it."""
        self._known_type(type_name)
        owner = self._owner_of(type_name, key)
        if owner != self.silo_id:
            payload = _request("reminders", type_name, key, action=action, name=name,
                               request=request)  # fmt: skip
            return await self.router.forward(owner, payload, self._deadline(None), hops)
        actor = self.catalog.actor_key(type_name, key)
        if action == "list":
            return visible(await self.storage.reminders_of(actor))
        name = check_channel_name(name or "")
        fence = await self.ownership.fence(actor.partition)
        if action == "cancel":
            return {"cancelled": await self.storage.reminder_cancel(fence, actor, name)}
        reminder = reminder_from_request(self.app, actor, name, request or {}, self.clock.time())
        await self.storage.reminder_set(fence, reminder)
        return describe(reminder)

    async def send_to_topic(
        self,
        type_name: str,
        key: str,
        topic: str,
        value: Any,
        *,
        message_id: str | None = None,
        timeout: float | None = None,
        hops: int = 0,
    ) -> str:
        """Append ``value`` to the actor's durable topic queue (through its inbox); a
        workflow takes it with ``ctx.receive(topic)``. Returns the message id once stored."""
        spec = self._known_type(type_name)
        check_channel_name(topic)
        if spec.is_stateless:
            raise BadRequest(
                f"{type_name} is a stateless worker: it has no inbox; call it", {"field": "type"}
            )
        if not any(h.kind == "workflow" for h in spec.handlers.values()):
            # Only a workflow receives from a topic: the message would wait forever.
            raise BadRequest(
                f"{type_name} has no workflow handler to receive from topic {topic!r}",
                {"field": "type"},
            )
        check_recordable("value", value, f"message to topic {topic!r}")
        message_id = message_id or uuid.uuid4().hex
        args = {"topic": topic, "value": value}
        deadline = self._deadline(timeout)
        owner = self._owner_of(type_name, key)
        if owner != self.silo_id:
            payload = _request("tell", type_name, key, method=SEND_METHOD, args=args)
            payload["idem"] = message_id
            result: str = await self.router.forward(owner, payload, deadline, hops)
            return result
        activation = await self._activation(spec, key, deadline)
        message = Message(SEND_METHOD, args, None, message_id)
        await until(asyncio.ensure_future(activation.accept_tell(message)), deadline)
        return message_id

    async def workflow_runs(self, type_name: str, key: str) -> list[dict[str, Any]]:
        """The actor's workflow runs: archived history (with lineage), newest last."""
        self._known_type(type_name)
        actor = self.catalog.actor_key(type_name, key)
        stored = await self.storage.kv_get(actor, [HISTORY_INDEX])
        index = codec.unpack(stored[HISTORY_INDEX]) if HISTORY_INDEX in stored else []
        keys = [history_key(run) for run in index]
        entries = await self.storage.kv_get(actor, keys) if keys else {}
        return [codec.unpack(entries[k]) for k in keys if k in entries]

    def _known_type(self, type_name: str) -> ActorSpec:
        spec = self.app.spec(type_name)
        if spec is None:
            raise UnknownActorType(
                f"no actor type {type_name!r} on this silo", {"known": sorted(self.app.actors)}
            )
        return spec

    def _deadline(self, timeout: float | None) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time() + (timeout or self.settings.call_timeout)

    def _owner_of(self, type_name: str, key: str) -> str:
        return self._owner(partition_of(type_name, key, self.settings.partitions))

    def _owner(self, partition: int) -> str:
        """The silo that owns ``partition``; Unavailable if this silo cannot serve now."""
        if self.stopping and self.agent.lost is not None:
            raise Unavailable(f"silo {self.silo_id} stopped serving: {self.agent.lost}")
        owner = self.agent.ring.owner(partition)
        if owner is None:
            raise Unavailable("no active silo in the ring yet; retry")
        if owner == self.silo_id and not self.agent.lease_valid():
            raise Unavailable(f"silo {self.silo_id} cannot confirm its lease; retry")
        return owner

    async def _activation(self, spec: ActorSpec, key: str, deadline: float) -> Activation:
        active = self.catalog.peek(spec.type_name, key)
        if active is not None:  # the common case: no task, no waiting
            return active
        activation: Activation = await until(
            asyncio.ensure_future(self.catalog.get(spec, key)), deadline
        )
        return activation

    async def wake_for(self, reminder: Reminder) -> None:
        """Fire a wake reminder: activate its actor (a parked workflow run resumes from its
        inbox message), then remove the reminder."""
        actor = reminder.actor
        spec = self.app.spec(actor.type)
        if spec is None or self._owner_of(actor.type, actor.key) != self.silo_id:
            return  # moved: the new owner fires it
        await self._activation(spec, actor.key, self._deadline(None))
        fence = await self.ownership.fence(actor.partition)
        await self.storage.reminder_cancel(fence, actor, reminder.name)

    async def wake_inboxes(self, partitions: list[int]) -> None:
        """Activate actors of these partitions that have tells waiting in their inbox, or
        journaled tells of their own that may not have gone out (after a crash, a hand-off,
        or a storage failure that closed an activation); activating them replays the
        journal, which sends those again.

        Nothing else runs those tells if no new message comes for their actors, so a
        retryable failure (storage away, the lease unconfirmed) is tried again, backing
        off, for as long as this silo owns the partitions and is not stopping."""
        pause = WAKE_RETRY_FIRST
        while True:
            partitions = [p for p in partitions if self.owns_partition(p)]
            if self.stopping or not partitions:
                return
            try:
                partitions = await self._wake_once(partitions)
            except RETRYABLE as exc:
                log.warning("cannot list inboxes of %d partitions yet: %s", len(partitions), exc)
            if not partitions:
                return
            await self.clock.sleep(pause)
            pause = min(pause * 2, WAKE_RETRY_MAX)

    async def _wake_once(self, partitions: list[int]) -> list[int]:
        """One pass of ``wake_inboxes``; the partitions to try again."""
        waiting, sending = await asyncio.gather(
            self.storage.inbox_actors(partitions), self.storage.outbox_actors(partitions)
        )
        if sending:
            listed = set(waiting)
            waiting += [actor for actor in sending if actor not in listed]
        deadline = asyncio.get_running_loop().time() + self.settings.claim_wait * 2
        again: set[int] = set()

        async def wake(actor: ActorKey) -> None:
            spec = self.app.spec(actor.type)
            if spec is None:
                log.warning("tells of %s wait, but this app has no such type", actor)
                return
            try:
                if self._owner_of(actor.type, actor.key) != self.silo_id:
                    return
                await self._activation(spec, actor.key, deadline)
            except RETRYABLE as exc:
                log.warning("cannot activate %s to send or take its tells yet: %s", actor, exc)
                again.add(actor.partition)
            except Exception:
                log.exception("could not activate %s to send or take its tells", actor)

        for start in range(0, len(waiting), 64):
            batch = waiting[start : start + 64]
            await asyncio.gather(*(wake(actor) for actor in batch))
        return sorted(again)


async def _stored(activation: Activation, message: Message) -> str:
    """Store a tell in its actor's inbox; its message id once durable."""
    await activation.accept_tell(message)
    assert message.idempotency_key is not None
    return message.idempotency_key


def _request(op: str, type_name: str, key: str, **fields: Any) -> dict[str, Any]:
    """A request for another silo (see ``runtime/routing.py`` for the shapes)."""
    return {"op": op, "type": type_name, "key": key, **fields}
