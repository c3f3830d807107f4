"""msgpack encoding shared by the storage records, the wire and the client."""

from __future__ import annotations

from typing import Any

import msgpack


def pack(value: Any) -> bytes:
    """Encode a value made of dicts, lists, str, bytes, int, float, bool and None."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    """Decode what ``pack`` wrote; str stays str and bytes stays bytes."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
