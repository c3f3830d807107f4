"""Introspection: what the cluster knows about one actor, read on the silo that owns it.

``GET /v1/actors/{type}/{key}`` and ``bayou inspect TYPE/KEY`` answer with the owner, the
activation's status, its journal position and its state. Looking never activates: an
actor that is not in memory is described from storage (its latest snapshot, and the
journal records after it that a load would replay) unless ``activate`` is asked for.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bayou.errors import Unavailable, UnknownActorType
from bayou.model import Actor
from bayou.runtime.records import SnapshotBody
from bayou.runtime.reminders import visible
from bayou.wire import partition_of

if TYPE_CHECKING:
    from bayou.runtime.activation import Activation
    from bayou.runtime.silo import Silo

INSPECT_OP = "inspect"  # the link request that carries an inspection to the owner


async def inspect_actor(
    silo: Silo, type_name: str, key: str, *, activate: bool = False, hops: int = 0
) -> dict[str, Any]:
    """The actor's owner, status, journal position and state, from the silo that owns it."""
    spec = silo.app.spec(type_name)
    if spec is None:
        raise UnknownActorType(
            f"no actor type {type_name!r} on this silo", {"known": sorted(silo.app.actors)}
        )
    partition = partition_of(type_name, key, silo.settings.partitions)
    described: dict[str, Any] = {
        "type": type_name,
        "key": key,
        "partition": partition,
        "kind": "stateless" if spec.is_stateless else "entity" if spec.is_entity else "actor",
    }
    if spec.is_stateless:
        return described | {
            "owner": None,  # every silo runs it locally: no state, no journal
            "status": "stateless",
            "local_activations": silo.catalog.worker_pool(spec).activations,
        }
    owner = silo.agent.ring.owner(partition)
    if owner is None:
        raise Unavailable("no active silo in the ring yet; retry")
    if owner != silo.silo_id:
        payload = {"op": INSPECT_OP, "type": type_name, "key": key, "activate": activate}
        deadline = asyncio.get_running_loop().time() + silo.settings.call_timeout
        reply: dict[str, Any] = await silo.router.forward(owner, payload, deadline, hops)
        return reply
    member = silo.agent.view.member(owner)
    described["owner"] = {"silo": owner, "address": member.address if member else silo.address}
    actor = silo.catalog.actor_key(type_name, key)
    activation = silo.catalog.peek(type_name, key)
    if activation is None and activate:
        activation = await silo.catalog.get(spec, key)
    if activation is not None:
        described |= _from_memory(silo, activation)
    else:
        described |= await _from_storage(silo, actor)
    described["inbox"] = len(await silo.storage.inbox_read(actor))
    described["reminders"] = visible(await silo.storage.reminders_of(actor))
    return described


def _from_memory(silo: Silo, activation: Activation) -> dict[str, Any]:
    state = None
    if isinstance(activation.instance, Actor):
        state = activation.instance._committed.model_dump(mode="json")
    return {
        "status": activation.status,
        "epoch": activation.fence.epoch if activation.fence is not None else None,
        "seq": activation.seq,
        "snapshot_seq": activation.snapshot_seq,
        "journal_length": activation.seq - activation.snapshot_seq,
        "replayed_on_load": activation.replayed,
        "idle_seconds": round(silo.clock.monotonic() - activation.last_used, 3),
        "workflow_runs": sorted(activation.runs),
        "state_source": "memory",
        "state": state,
    }


async def _from_storage(silo: Silo, actor: Any) -> dict[str, Any]:
    snapshot = await silo.storage.read_snapshot(actor)
    snapshot_seq = snapshot.seq if snapshot is not None else 0
    journal = await silo.storage.read_journal(actor, snapshot_seq)
    state = SnapshotBody.decode(snapshot.data).state if snapshot is not None else None
    return {
        "status": "inactive",
        "seq": journal[-1].seq if journal else snapshot_seq,
        "snapshot_seq": snapshot_seq,
        "journal_length": len(journal),
        # Without activating, the state is the snapshot's: records after it are not applied.
        "state_source": "snapshot" if snapshot is not None else "none",
        "state": state,
    }
