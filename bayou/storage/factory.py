"""Pick a storage backend from a URL, as given on the command line or in settings."""

from __future__ import annotations

import os

from bayou.storage.contract import Storage
from bayou.storage.memory import MemoryStorage
from bayou.storage.sqlite import SqliteStorage

# The URL forms of ``bayou.storage.redis_clients`` (not imported here: it imports redis).
_REDIS_SCHEMES = (
    "redis://",
    "rediss://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+sentinel://",
    "rediss+sentinel://",
)


def open_storage(url: str, cluster: str = "default") -> Storage:
    """The backend ``url`` names, constructed but not opened (the caller awaits ``open()``).

    ``memory://`` is an in-process store; ``sqlite:///abs/path.db`` or a plain filesystem
    path is a sqlite file; ``redis://`` and ``rediss://`` URLs are a Redis server,
    ``redis+cluster://`` a Redis Cluster and ``redis+sentinel://`` a Sentinel-managed
    primary (``bayou.storage.redis_clients``), shared by the silos of ``cluster`` (which
    only the redis backend uses). Anything else raises ValueError.
    """
    if url == "memory://":
        return MemoryStorage()
    if url.startswith(_REDIS_SCHEMES):
        # Imported here so that choosing another backend never imports redis.
        from bayou.storage.redis import RedisStorage

        return RedisStorage(url, cluster)
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path:
            raise ValueError(f"storage url {url!r} names no database file")
        return SqliteStorage(path)
    if url and "://" not in url:
        return SqliteStorage(os.path.expanduser(url))
    raise ValueError(
        f"unsupported storage url {url!r}: use memory://, sqlite:///path, a path, "
        "redis://, redis+cluster:// or redis+sentinel://"
    )
