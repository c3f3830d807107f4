"""open_storage: which URL gives which backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from bayou.storage import MemoryStorage, RedisStorage, SqliteStorage, open_storage


def test_memory_url() -> None:
    assert isinstance(open_storage("memory://"), MemoryStorage)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/bayou/data.db", "/var/lib/bayou/data.db"),
        ("/var/lib/bayou/data.db", "/var/lib/bayou/data.db"),
        ("data/bayou.db", "data/bayou.db"),
    ],
)
def test_sqlite_urls_and_paths(url: str, path: str) -> None:
    storage = open_storage(url)
    assert isinstance(storage, SqliteStorage)
    assert storage.path == Path(path)


def test_home_is_expanded() -> None:
    storage = open_storage("~/bayou.db")
    assert isinstance(storage, SqliteStorage)
    assert "~" not in str(storage.path)


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://user:pw@redis:6380/2"])
def test_redis_urls(url: str) -> None:
    storage = open_storage(url, cluster="prod")
    assert isinstance(storage, RedisStorage)
    assert storage.url == url
    assert storage.keys.cluster == "prod"


def test_redis_cluster_defaults_and_positional() -> None:
    default = open_storage("redis://localhost:6379/0")
    assert isinstance(default, RedisStorage) and default.keys.cluster == "default"
    positional = open_storage("redis://localhost:6379/0", "blue")
    assert isinstance(positional, RedisStorage) and positional.keys.cluster == "blue"


def test_redis_cluster_name_must_not_break_the_hash_tag() -> None:
    with pytest.raises(ValueError, match="cluster name"):
        open_storage("redis://localhost:6379/0", cluster="a}b")


@pytest.mark.parametrize("url", ["", "postgres://db/bayou", "memory://extra", "sqlite://"])
def test_unknown_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_storage(url)
    assert repr(url) in str(info.value)
