"""bayou: durable virtual actors for Python.

Actors are addressed by ``(type, key)`` and always exist: a silo activates one on demand,
runs its messages one at a time, journals each one durably and snapshots its state.

Layering (imports only point down)::

    bayou.client   ->  bayou.model, bayou.wire, bayou.errors
    bayou.runtime  ->  bayou.placement  ->  bayou.storage

``import bayou`` stays light: each public name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bayou.client import ActorRef, Client
    from bayou.context import KV, Context
    from bayou.errors import (
        ActorError,
        BadRequest,
        BayouError,
        CallTimeout,
        ConfigurationError,
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
        Unauthorized,
        Unavailable,
        UnknownActorType,
        UnknownMethod,
        UnsupportedMediaType,
    )
    from bayou.model import (
        Actor,
        ActorBase,
        Entity,
        StatelessWorker,
        actor,
        always_interleave,
        query,
        stateless_worker,
        workflow,
    )
    from bayou.runtime import App, Silo, SiloSettings

__version__ = "0.1.0"

# Every public name loads its module on first use, so ``import bayou.storage`` (say) pulls in
# nothing above it: the layering test checks this in a fresh interpreter.
_MODULE_OF = {
    "Actor": "bayou.model",
    "ActorBase": "bayou.model",
    "Entity": "bayou.model",
    "StatelessWorker": "bayou.model",
    "stateless_worker": "bayou.model",
    "workflow": "bayou.model",
    "actor": "bayou.model",
    "always_interleave": "bayou.model",
    "query": "bayou.model",
    "KV": "bayou.context",
    "Context": "bayou.context",
    "ActorRef": "bayou.client",
    "Client": "bayou.client",
    "App": "bayou.runtime",
    "Silo": "bayou.runtime",
    "SiloSettings": "bayou.runtime",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        if name not in __all__:
            raise AttributeError(f"module 'bayou' has no attribute {name!r}")
        module = "bayou.errors"
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
    "ConfigurationError",
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
    "StatelessWorker",
    "StorageError",
    "Unauthorized",
    "Unavailable",
    "UnknownActorType",
    "UnknownMethod",
    "UnsupportedMediaType",
    "actor",
    "always_interleave",
    "query",
    "stateless_worker",
    "workflow",
]
