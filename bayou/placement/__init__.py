"""Where actors live: partitions, ownership claims and (with Redis) the ring of silos."""

from bayou.placement.partitions import partition_of

__all__ = ["partition_of"]
