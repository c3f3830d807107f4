"""msgpack encoding shared by the storage records, the wire and the client."""

from __future__ import annotations

from typing import Any

import msgpack

# Idle packers. ``msgpack.packb`` makes a Packer (and its buffer) per call, which costs
# twice what packing a small record does; these are reused. A packer is taken off the list
# while in use, so threads and re-entrant packing each get their own (pop and append are
# atomic), and a failed pack leaves the packer reset (msgpack clears its buffer).
_packers: list[msgpack.Packer] = []


def pack(value: Any) -> bytes:
    """Encode a value made of dicts, lists, str, bytes, int, float, bool and None."""
    try:
        packer = _packers.pop()
    except IndexError:
        packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    try:
        return packer.pack(value)  # type: ignore[no-any-return]
    finally:
        _packers.append(packer)


def unpack(data: bytes) -> Any:
    """Decode what ``pack`` wrote; str stays str and bytes stays bytes."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
