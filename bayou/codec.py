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


def array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items: followed by ``n`` packed values it
    is the packing of that array, without packing the values again."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def map_header(n: int) -> bytes:
    """The msgpack header of a map of ``n`` pairs (as ``array_header``)."""
    if n < 16:
        return bytes((0x80 | n,))
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")
