"""The key space cut into a fixed number of partitions, the unit of ownership and hand-off."""

from __future__ import annotations

import hashlib


def partition_of(actor_type: str, key: str, partitions: int) -> int:
    """The partition of an actor: a stable hash of ``(type, key)`` modulo ``partitions``.

    Stable across processes, machines and Python versions (unlike ``hash()``), since every
    silo and every client must agree on it.
    """
    digest = hashlib.blake2b(actor_type.encode() + b"\x00" + key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions
