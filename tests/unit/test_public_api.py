"""The public API is exactly what ``bayou.__all__`` says; changing it is a decision."""

from __future__ import annotations

import bayou

EXPECTED = [
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


def test_all_is_pinned_and_sorted() -> None:
    assert bayou.__all__ == EXPECTED
    assert bayou.__all__ == sorted(bayou.__all__, key=lambda n: (not n.isupper(), n))


def test_every_exported_name_resolves() -> None:
    for name in bayou.__all__:
        value = getattr(bayou, name)
        assert getattr(value, "__module__", "").startswith("bayou"), name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        bayou.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("bayou.NoSuchThing resolved")
