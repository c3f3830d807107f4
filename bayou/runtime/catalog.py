"""The catalog: which activations this silo holds, creating them on demand, passivating idle ones.

At most one activation per actor exists in a silo: concurrent first messages wait for the
same load, and a message for an actor being deactivated waits for it to close, then
activates it afresh from storage.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from bayou.clock import Clock
from bayou.errors import ActorError, BayouError, Unavailable
from bayou.model import ActorSpec
from bayou.placement.ownership import PartitionOwnership
from bayou.placement.partitions import partition_of
from bayou.runtime.activation import Activation
from bayou.runtime.app import App
from bayou.runtime.channels import Channels
from bayou.runtime.workers import WorkerPool
from bayou.storage.contract import ActorKey, Storage
from bayou.storage.group_commit import GroupCommitter
from bayou.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bayou.runtime.invocation import InvocationContext

log = logging.getLogger("bayou.catalog")


class Catalog:
    """Activations by ``(type, key)``, and the idle collector that passivates them."""

    def __init__(
        self,
        app: App,
        storage: Storage,
        committer: GroupCommitter,
        ownership: PartitionOwnership,
        clock: Clock,
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.storage = storage
        self.committer = committer
        self.ownership = ownership
        self.clock = clock
        self.metrics: Counter[str] = Counter()
        # By type, then key: no tuple per activation, which matters at a million of them.
        self._activations: dict[str, dict[str, Activation]] = {}
        self._count = 0
        self._collector: asyncio.Task[None] | None = None
        self.calls: Any = None  # set by the silo: routes actor-to-actor calls
        self.silo: Any = None  # set by the silo: delivers tells from outboxes
        self.channels = Channels(storage)
        self._workers: dict[str, WorkerPool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the activations run on. Asked of asyncio once: on Python 3.11 that is a
        getpid system call, and every turn needs the loop twice (its future, its task)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    @property
    def fenced_writes(self) -> int:
        """Writes storage refused because this silo no longer owned the partition."""
        return self.metrics["fenced_writes"] + self.committer.fenced

    def __len__(self) -> int:
        return self._count

    def actor_key(self, type_name: str, key: str) -> ActorKey:
        return ActorKey(type_name, key, partition_of(type_name, key, self.settings.partitions))

    async def get(self, spec: ActorSpec, key: str) -> Activation:
        """The active activation of ``(spec, key)``, loading it from storage if needed."""
        of_type = self._activations.get(spec.type_name)
        if of_type is None:
            of_type = self._activations[spec.type_name] = {}
        while True:
            activation = of_type.get(key)
            if activation is None:
                activation = Activation(self, spec, key, self.actor_key(spec.type_name, key))
                of_type[key] = activation
                self._count += 1
                try:
                    await activation.load()
                except BaseException as exc:
                    self.forget(activation)
                    activation.status = "closed"
                    if isinstance(exc, Exception) and not isinstance(exc, BayouError):
                        # on_activate or a state model that no longer loads: the caller
                        # gets a typed error naming it, the log gets the traceback.
                        log.exception("activating %s failed", activation.actor_key)
                        exc = ActorError(
                            f"activating {activation.actor_key} failed: {exc}",
                            {"exception": type(exc).__name__},
                        )
                    activation.load_finished(exc)
                    raise exc from None
                activation.load_finished()
                self.metrics["activations"] += 1
                return activation
            if activation.status == "active":
                return activation
            if activation.status == "loading":
                await asyncio.shield(activation.loaded)
                continue
            # deactivating or closed: wait until it is gone, then activate afresh
            await asyncio.shield(activation.closed)
            self.forget(activation)

    def worker_pool(self, spec: ActorSpec) -> WorkerPool:
        pool = self._workers.get(spec.type_name)
        if pool is None:
            pool = self._workers[spec.type_name] = WorkerPool(self, spec)
        return pool

    def lease_ok(self) -> bool:
        """Whether this silo may start turns: its membership lease is confirmed."""
        return self.silo is None or bool(self.silo.agent.lease_valid())

    def wake_later(self, partition: int, delay: float = 1.0) -> None:
        """Activate the partition's actors with tells waiting again in ``delay`` seconds:
        an activation closed on a storage failure leaves its mailbox's tells in the inbox,
        and nothing else would run them if no new message came for the actor."""
        if self.silo is not None:
            self.silo.rebalancer.wake([partition], delay)

    def peek(self, type_name: str, key: str) -> Activation | None:
        """The activation of ``(type_name, key)`` if it is active right now."""
        of_type = self._activations.get(type_name)
        activation = of_type.get(key) if of_type is not None else None
        if activation is not None and activation.status == "active":
            return activation
        return None

    def forget(self, activation: Activation) -> None:
        of_type = self._activations.get(activation.spec.type_name)
        if of_type is not None and of_type.get(activation.key) is activation:
            del of_type[activation.key]
            self._count -= 1

    def activations(self) -> list[Activation]:
        return [a for of_type in self._activations.values() for a in of_type.values()]

    def by_partition(self) -> dict[int, list[Activation]]:
        grouped: dict[int, list[Activation]] = {}
        for activation in self.activations():
            grouped.setdefault(activation.actor_key.partition, []).append(activation)
        return grouped

    # -- passivation -----------------------------------------------------------------------

    def start(self) -> None:
        self._collector = asyncio.get_running_loop().create_task(self._collect_forever())

    async def _collect_forever(self) -> None:
        period = max(min(self.settings.idle_timeout / 4, self.settings.snapshot_interval / 2), 0.05)
        while True:
            await self.clock.sleep(period)
            try:
                await self.collect()
            except Exception:
                log.exception("idle collection failed; trying again next period")

    async def collect(self) -> int:
        """Passivate activations idle for ``idle_timeout``; snapshot stale ones. Returns count."""
        now = self.clock.monotonic()
        idle: list[Activation] = []
        for activation in self.activations():
            if not activation.is_idle():
                continue
            if now - activation.last_used >= self.settings.idle_timeout:
                idle.append(activation)
            elif (
                activation.records_since_snapshot() > 0
                and now - activation.last_snapshot >= self.settings.snapshot_interval
            ):
                activation.request_snapshot()
        for batch_start in range(0, len(idle), 256):
            batch = idle[batch_start : batch_start + 256]
            await asyncio.gather(*(a.deactivate() for a in batch))
        self.metrics["passivations"] += len(idle)
        return len(idle)

    async def _stop_collector(self) -> None:
        if self._collector is not None:
            await cancel_and_wait(self._collector)
            self._collector = None

    async def abandon(self) -> None:
        """Drop every activation at once, as a crash would: nothing more is written."""
        await self._stop_collector()
        for activation in self.activations():
            activation.abandon()
        self._activations.clear()
        self._count = 0

    async def stop(self) -> None:
        """Stop collecting and deactivate everything (each one snapshotted)."""
        await self._stop_collector()
        while self._count:
            everything = self.activations()  # once per round, not once per batch
            for start in range(0, len(everything), 256):
                batch = everything[start : start + 256]
                await asyncio.gather(*(a.deactivate() for a in batch))
                for activation in batch:
                    self.forget(activation)

    # -- actor-to-actor --------------------------------------------------------------------

    def actor_ref(self, ctx: InvocationContext, actor_type: Any, key: str) -> Any:
        if self.calls is None:
            raise Unavailable("actor-to-actor calls are not wired on this silo")
        return self.calls.ref(ctx, actor_type, key)
