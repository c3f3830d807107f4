"""The calling end of the silo-to-silo link; it lives in ``bayou.link.pool`` (the client
uses it too) and is re-exported here under its old name."""

from __future__ import annotations

from bayou.link.pool import LinkPool

__all__ = ["LinkPool"]
