"""A small LRU of an entity's committed kv values, so hot keys are not re-read per call."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

_ABSENT = b""  # cached knowledge that a key does not exist (stored values are never b"")


class KVCache:
    """Committed values by key, at most ``capacity`` entries, including known absences."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def lookup(self, keys: Iterable[str]) -> tuple[dict[str, bytes], list[str]]:
        """Values found in the cache, and the keys that must be read from the store."""
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for key in keys:
            value = self._entries.get(key)
            if value is None:
                missing.append(key)
                continue
            self._entries.move_to_end(key)
            if value is not _ABSENT:
                found[key] = value
        return found, missing

    def fill(self, asked: Iterable[str], stored: Mapping[str, bytes]) -> None:
        for key in asked:
            self._put(key, stored.get(key, _ABSENT))

    def apply(self, writes: Mapping[str, bytes | None]) -> None:
        """Reflect a committed invocation's writes (None = deleted)."""
        for key, value in writes.items():
            self._put(key, _ABSENT if value is None else value)

    def _put(self, key: str, value: bytes) -> None:
        if self._capacity <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
