"""Where actors live: partitions, ownership claims, membership and the ring of silos.

``RedisMembership`` lives in ``bayou.placement.redis_membership`` and is not imported
here, so that importing placement never loads the redis client.
"""

from bayou.placement.membership import (
    Member,
    Membership,
    MembershipView,
    SiloDeclaredDead,
    SiloStatus,
)
from bayou.placement.memory_membership import MemoryMembership
from bayou.placement.partitions import partition_of
from bayou.placement.ring import PartitionRing

__all__ = [
    "Member",
    "Membership",
    "MembershipView",
    "MemoryMembership",
    "PartitionRing",
    "SiloDeclaredDead",
    "SiloStatus",
    "partition_of",
]
