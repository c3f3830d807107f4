"""``bayou.ids``: fresh ids are 32 hex digits, distinct, and distinct across a fork."""

from __future__ import annotations

import os
import sys

import pytest

from bayou.ids import unique_id


def test_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [unique_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="POSIX fork")
def test_a_forked_child_draws_its_own_ids() -> None:
    unique_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, unique_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    mine = unique_id()
    assert child[:16] != mine[:16] and child != mine
