"""bayou: durable virtual actors for Python.

Actors are addressed by ``(type, key)`` and always exist: a silo activates one on demand,
runs its messages one at a time, journals each one durably and snapshots its state.

Layering (imports only point down)::

    bayou.client   ->  bayou.actor, bayou.wire, bayou.errors
    bayou.runtime  ->  bayou.placement  ->  bayou.storage

``import bayou`` stays light: the runtime and the client load on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bayou.actor import Actor, ActorBase, Entity, actor, query
from bayou.context import KV, Context
from bayou.errors import (
    ActorError,
    BadRequest,
    BayouError,
    CallTimeout,
    DeadlockError,
    FencedWrite,
    IdempotencyKeyReused,
    InternalError,
    InvalidArguments,
    NonDeterminismError,
    NotFound,
    PayloadTooLarge,
    RequestError,
    SiloUnreachable,
    StorageError,
    Unavailable,
    UnknownActorType,
    UnknownMethod,
    UnsupportedMediaType,
)

if TYPE_CHECKING:
    from bayou.client import ActorRef, Client
    from bayou.runtime import App, Silo, SiloSettings

__version__ = "0.1.0"

_LAZY = {
    "ActorRef": "bayou.client",
    "App": "bayou.runtime",
    "Client": "bayou.client",
    "Silo": "bayou.runtime",
    "SiloSettings": "bayou.runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bayou' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "KV",
    "Actor",
    "ActorBase",
    "ActorError",
    "ActorRef",
    "App",
    "BadRequest",
    "BayouError",
    "CallTimeout",
    "Client",
    "Context",
    "DeadlockError",
    "Entity",
    "FencedWrite",
    "IdempotencyKeyReused",
    "InternalError",
    "InvalidArguments",
    "NonDeterminismError",
    "NotFound",
    "PayloadTooLarge",
    "RequestError",
    "Silo",
    "SiloSettings",
    "SiloUnreachable",
    "StorageError",
    "Unavailable",
    "UnknownActorType",
    "UnknownMethod",
    "UnsupportedMediaType",
    "actor",
    "query",
]
