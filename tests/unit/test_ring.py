"""The partition ring: deterministic everywhere, even, and moving little when silos change."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from bayou.placement import PartitionRing
from bayou.placement.ring import moved

P = 1024
# Ids shaped like the ones silos give themselves (`silo-<12 hex>`).
SILOS = ["silo-3f9c1a2b7d4e", "silo-a81e55c0f912", "silo-0c7d2e9b4a61", "silo-e4b8f01d3c95"]


def digest(ring: PartitionRing) -> str:
    return hashlib.sha256("\n".join(map(str, ring.table)).encode()).hexdigest()


def test_same_silos_in_any_order_give_the_same_table() -> None:
    one = PartitionRing(SILOS, P)
    two = PartitionRing(list(reversed(SILOS)) + SILOS[:1], P)  # order and duplicates ignored
    assert one.silos == two.silos == tuple(sorted(SILOS))
    assert len(one.table) == P
    assert one.table == two.table
    assert moved(one, two) == 0


def test_the_table_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import hashlib, sys\n"
        "from bayou.placement.ring import PartitionRing\n"
        f"ring = PartitionRing(sys.argv[1:], {P})\n"
        "print(hashlib.sha256('\\n'.join(map(str, ring.table)).encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, *reversed(SILOS)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.strip() == digest(PartitionRing(SILOS, P))


def test_three_silos_share_the_partitions_evenly() -> None:
    ring = PartitionRing(SILOS[:3], P)
    counts = {silo: len(ring.partitions_of(silo)) for silo in ring.silos}
    assert sum(counts.values()) == P
    even = P / 3
    assert all(abs(n - even) <= 0.10 * even for n in counts.values()), counts


def test_every_partition_has_exactly_one_owner() -> None:
    ring = PartitionRing(SILOS, P)
    owned = [ring.partitions_of(silo) for silo in ring.silos]
    assert sum(len(o) for o in owned) == P
    assert frozenset().union(*owned) == frozenset(range(P))
    for silo, partitions in zip(ring.silos, owned, strict=True):
        assert all(ring.owner(p) == silo for p in partitions)


def test_going_from_two_to_four_silos_moves_about_half() -> None:
    two = PartitionRing(SILOS[:2], P)
    four = PartitionRing(SILOS, P)
    assert 0.45 <= moved(two, four) / P <= 0.55
    # Consistent hashing: every partition that moved went to one of the newcomers.
    for p in range(P):
        if two.owner(p) != four.owner(p):
            assert four.owner(p) in SILOS[2:]


def test_a_leaving_silo_moves_only_its_own_partitions() -> None:
    three = PartitionRing(SILOS[:3], P)
    leaver = SILOS[1]
    two = PartitionRing([s for s in SILOS[:3] if s != leaver], P)
    for p in range(P):
        if three.owner(p) != leaver:
            assert two.owner(p) == three.owner(p), p
        else:
            assert two.owner(p) != leaver
    assert moved(three, two) == len(three.partitions_of(leaver)) > 0
    assert two.partitions_of(leaver) == frozenset()


def test_an_empty_ring_owns_nothing() -> None:
    ring = PartitionRing([], P)
    assert ring.silos == ()
    assert ring.owner(0) is None
    assert ring.owner(P - 1) is None
    assert ring.partitions_of("silo-x") == frozenset()
    assert moved(ring, PartitionRing(SILOS[:1], P)) == P


def test_one_silo_owns_everything() -> None:
    ring = PartitionRing(["only"], 16)
    assert ring.partitions_of("only") == frozenset(range(16))
    assert {ring.owner(p) for p in range(16)} == {"only"}


def test_bad_arguments_are_refused() -> None:
    ring = PartitionRing(SILOS, 8)
    for partition in (-1, 8):
        with pytest.raises(IndexError):
            ring.owner(partition)
    with pytest.raises(ValueError, match="partitions"):
        PartitionRing(SILOS, 0)
    with pytest.raises(ValueError, match="vnodes"):
        PartitionRing(SILOS, 8, vnodes=0)
    with pytest.raises(ValueError, match="empty"):
        PartitionRing(["", "a"], 8)
    with pytest.raises(ValueError, match="partition count"):
        moved(ring, PartitionRing(SILOS, 16))
