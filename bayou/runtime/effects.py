"""What an invocation sends out besides its reply: events, stream items and tells.

Events and streams live in the actor's kv store under keys the runtime reserves (they
start with ``\\x01``, which user kv keys may not), so they commit atomically with the
invocation's journal record on every storage backend, with no extra write.

    \\x01ev:<name>            the latest value of event <name>
    \\x01sm:<name>            stream <name>'s metadata: [next offset, closed]
    \\x01si:<name>:<offset>   stream item at <offset> (0, 1, 2, ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bayou import codec
from bayou.errors import BadRequest
from bayou.storage.contract import Reminder
from bayou.wire import key_problem

RESERVED = "\x01"
MAX_CHANNEL_NAME = 128


def event_key(name: str) -> str:
    return f"\x01ev:{name}"


def stream_meta_key(name: str) -> str:
    return f"\x01sm:{name}"


def stream_item_key(name: str, offset: int) -> str:
    return f"\x01si:{name}:{offset}"


def check_channel_name(name: str) -> str:
    """An event or stream name: 1 to 128 characters, no control characters."""
    if not isinstance(name, str):
        raise TypeError(f"event and stream names are strings, got {type(name).__name__}")
    problem = key_problem(name, "name")
    if problem is None and len(name) > MAX_CHANNEL_NAME:
        problem = f"name is longer than {MAX_CHANNEL_NAME} characters"
    if problem is not None:
        raise BadRequest(
            f"invalid event or stream name {name[:40]!r}: {problem}", {"field": "name"}
        )
    return name


@dataclass(slots=True)
class StreamMeta:
    """Where a stream stands: the offset its next item gets, and whether it has ended."""

    next_offset: int = 0
    closed: bool = False

    def encode(self) -> bytes:
        return codec.pack([self.next_offset, self.closed])

    @classmethod
    def decode(cls, data: bytes | None) -> StreamMeta:
        if data is None:
            return cls()
        next_offset, closed = codec.unpack(data)
        return cls(int(next_offset), bool(closed))


@dataclass(slots=True, init=False)
class Effects:
    """One invocation's buffered effects; nothing leaves before its record commits."""

    events: dict[str, bytes]
    streams: dict[str, list[bytes]]
    closed: set[str]
    outbox: list[list[Any]]  # [type, key, method, args]
    reminders: dict[str, Reminder | None]  # None: cancel

    def __init__(self) -> None:
        # By hand: every turn makes one, and dataclass default factories cost twice this.
        self.events = {}
        self.streams = {}
        self.closed = set()
        self.outbox = []
        self.reminders = {}

    def __bool__(self) -> bool:
        return bool(self.events or self.streams or self.closed or self.outbox or self.reminders)

    def stream_names(self) -> set[str]:
        return set(self.streams) | self.closed


@dataclass(slots=True)
class StreamAppend:
    """Items given offsets at commit: published to waiting readers once durable."""

    name: str
    first_offset: int
    items: list[bytes]
    closed: bool


def effect_writes(
    effects: Effects, metas: dict[str, StreamMeta]
) -> tuple[dict[str, bytes | None], list[StreamAppend]]:
    """The kv writes that make ``effects`` durable, given each written stream's metadata
    before this invocation (updated in place), and the appends to publish after commit."""
    writes: dict[str, bytes | None] = {}
    for name, value in effects.events.items():
        writes[event_key(name)] = value
    appends: list[StreamAppend] = []
    for name in sorted(effects.stream_names()):
        meta = metas[name]
        if meta.closed:
            raise RuntimeError(f"stream {name!r} is closed; nothing more can be written to it")
        items = effects.streams.get(name, [])
        first = meta.next_offset
        for index, item in enumerate(items):
            writes[stream_item_key(name, first + index)] = item
        meta.next_offset = first + len(items)
        meta.closed = name in effects.closed
        writes[stream_meta_key(name)] = meta.encode()
        appends.append(StreamAppend(name, first, items, meta.closed))
    return writes, appends
