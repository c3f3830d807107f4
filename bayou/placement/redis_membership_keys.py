"""Every Redis key Redis membership uses (``c`` = the cluster name)::

    bayou:{c}:members   hash     silo id -> msgpack record {address, status,
                                 lease_expires, registered_at}; times are integer
                                 microseconds of the Redis server's clock
    bayou:{c}:version   string   integer counter, INCR'd by every change of status (and
                                 by a ``forget`` that drops records); absent means 0
    bayou:{c}:config    hash     cluster constants fixed by the first silo (``partitions``)
    bayou:{c}:dead      hash     tombstones: silo id -> the server time (microseconds) it
                                 was declared dead; never removed, so a dead identity can
                                 never register or renew again, even after ``forget``

No key has a TTL: membership is the cluster's memory of who may own partitions, and an
expiring tombstone would let a dead silo back in. Leases are fields inside the records,
compared with the server's clock by the scripts, not Redis TTLs.

The cluster name sits in a hash tag, ``{c}``, so that the three keys share one slot: every
script touches several of them atomically, which Redis Cluster allows only within a slot.
For the same reason the name may not contain ``{`` or ``}``.
"""

from __future__ import annotations

from dataclasses import dataclass


def check_cluster_name(cluster: str) -> None:
    """Reject a cluster name that cannot live in a hash tag (or would be no name at all)."""
    if not cluster or "{" in cluster or "}" in cluster or any(c.isspace() for c in cluster):
        raise ValueError(f"invalid cluster name {cluster!r}: non-empty, no braces or spaces")


@dataclass(frozen=True, slots=True)
class MembershipKeys:
    """The keys of one cluster's membership, in the order the scripts take them."""

    members: str
    version: str
    dead: str
    config: str

    @classmethod
    def of(cls, cluster: str) -> MembershipKeys:
        check_cluster_name(cluster)
        prefix = f"bayou:{{{cluster}}}"
        return cls(
            members=f"{prefix}:members",
            version=f"{prefix}:version",
            dead=f"{prefix}:dead",
            config=f"{prefix}:config",
        )

    def all(self) -> list[str]:
        return [self.members, self.version, self.dead]
