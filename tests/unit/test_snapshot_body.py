"""Snapshot bodies: the dedup window packed once per entry gives the very bytes of packing
it whole, also as entries are replaced and pruned between snapshots."""

from __future__ import annotations

from bayou import codec
from bayou.runtime.records import DedupEntry, DedupWindow, Outcome, SnapshotBody


def entry(seq: int, reply: object = 1, at: float = 100.0) -> DedupEntry:
    return DedupEntry(seq, f"fp{seq}", Outcome(reply=reply), at)


def whole(window: DedupWindow, **body: object) -> bytes:
    """The encoding with every row packed afresh: what dump_packed must reproduce."""
    return SnapshotBody(dedup=window.dump(), **body).encode()  # type: ignore[arg-type]


def spliced(window: DedupWindow, **body: object) -> bytes:
    return SnapshotBody(dedup=[], dedup_packed=window.dump_packed(), **body).encode()  # type: ignore[arg-type]


def test_packed_windows_encode_to_the_same_bytes_through_changes() -> None:
    window = DedupWindow(size=20, max_age=10.0)
    body = {"state": {"n": 1, "s": "é"}, "taken_at": 5.0, "workflows": {}}
    assert spliced(window, **body) == whole(window, **body)  # empty
    for i in range(30):
        window.add(f"k{i}", entry(i, at=float(i)))
    assert spliced(window, **body) == whole(window, **body)
    window.add("k3", entry(99, reply={"changed": True}))  # a key replaced after packing
    window.add("new", entry(100, reply=None))
    assert spliced(window, **body) == whole(window, **body)
    window.prune(now=25.0)  # drops the oldest beyond size and age
    assert len(window.entries) < 32
    assert window.packed is not None and set(window.packed) <= set(window.entries)
    with_runs = {**body, "workflows": {"run-1": [["run", "step", 1]]}}
    assert spliced(window, **with_runs) == whole(window, **with_runs)


def test_a_spliced_body_decodes_to_the_window() -> None:
    window = DedupWindow(size=1000, max_age=10.0)
    for i in range(300):  # past 16 and 256 rows: every array header size but the largest
        window.add(f"k{i}", entry(i))
    data = SnapshotBody(None, [], 1.0, dedup_packed=window.dump_packed()).encode()
    decoded = SnapshotBody.decode(data)
    assert decoded.dedup == window.dump()
    again = DedupWindow(size=1000, max_age=10.0)
    again.load(decoded.dedup)
    assert again.entries == window.entries


def test_headers_match_msgpack_at_every_size() -> None:
    for n in (0, 1, 15, 16, 65535, 65536):
        assert codec.array_header(n) + b"\xc0" * n == codec.pack([None] * n)
    for n in (0, 15, 16):
        pairs = {f"k{i}": None for i in range(n)}
        packed = b"".join(codec.pack(k) + b"\xc0" for k in pairs)
        assert codec.map_header(n) + packed == codec.pack(pairs)
