"""open_storage: which URL gives which backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from bayou.storage import MemoryStorage, SqliteStorage, open_storage


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


def test_redis_is_not_available_yet() -> None:
    with pytest.raises(ValueError, match="redis storage is not available yet"):
        open_storage("redis://localhost:6379/0")


@pytest.mark.parametrize("url", ["", "postgres://db/bayou", "memory://extra", "sqlite://"])
def test_unknown_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_storage(url)
    assert repr(url) in str(info.value)
