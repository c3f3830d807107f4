"""``bayou.codec``: reused packers give exactly what a fresh one gives, also after a
value they refused."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from bayou import codec

VALUES: list[Any] = [None, 1, -(2**63), "é", b"\x00", [1, [2, {"k": 3.5}]], {"a": True}]


def test_packing_matches_msgpack_and_round_trips() -> None:
    for value in VALUES:
        packed = codec.pack(value)
        assert packed == msgpack.packb(value, use_bin_type=True)
        assert codec.unpack(packed) == value


@pytest.mark.parametrize("bad", [{"a": object()}, [1, 2**70], ["ok", "\ud800"]])
def test_a_refused_value_leaves_nothing_behind_for_the_next(bad: Any) -> None:
    codec.pack("warm")  # a packer is idle in the pool
    with pytest.raises((TypeError, OverflowError, UnicodeEncodeError)):
        codec.pack(bad)
    assert codec.pack({"x": 1}) == msgpack.packb({"x": 1}, use_bin_type=True)
