"""The key space cut into a fixed number of partitions, the unit of ownership and hand-off.

The hash itself is part of the wire contract (clients route by it), so it lives in
``bayou.wire``; placement re-exports it under the name the runtime uses.
"""

from __future__ import annotations

from bayou.wire import partition_of

__all__ = ["partition_of"]
