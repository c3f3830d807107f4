"""The journal record of one invocation and the snapshot of an actor, as stored bytes.

Field names are one letter because a busy actor writes millions of records; the layout is
versioned by ``v`` so that it can evolve without rewriting old journals.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from bayou import codec
from bayou.errors import ActorError, BayouError, error_class

RECORD_VERSION = 1

# A step is a small list: ["run", name, value] | ["now", timestamp] | ["seed", int].
Step = list[Any]


@dataclass(slots=True)
class Outcome:
    """How an invocation ended: a plain reply, or the wire form of its terminal error."""

    reply: Any = None
    error: dict[str, Any] | None = None

    @classmethod
    def failed(cls, exc: BayouError) -> Outcome:
        return cls(error=exc.to_wire()["error"])

    def unwrap(self) -> Any:
        """The reply, or raise the recorded error as its bayou exception class."""
        if self.error is None:
            return self.reply
        cls = error_class(str(self.error.get("type", "")))
        if cls is BayouError:
            cls = ActorError
        raise cls(str(self.error.get("message", "")), self.error.get("detail"))


@dataclass(slots=True)
class InvocationRecord:
    """One committed exclusive invocation: what came in, what it saw, how it ended."""

    method: str
    args: dict[str, Any]
    steps: list[Step]
    outcome: Outcome
    committed_at: float
    idempotency_key: str | None = None
    outbox: list[list[Any]] = field(default_factory=list)  # OutgoingTell rows
    # "call" (a turn), "segment" (steps of a running workflow), "workflow" (a run's end),
    # "send" (a message appended to a topic).
    kind: str = "call"
    run: str | None = None

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "v": RECORD_VERSION,
            "m": self.method,
            "a": self.args,
            "s": self.steps,
            "t": self.committed_at,
        }
        if self.idempotency_key is not None:
            body["k"] = self.idempotency_key
        if self.outbox:
            body["o"] = self.outbox
        if self.kind != "call":
            body["w"] = [self.kind, self.run]
        if self.outcome.error is None:
            body["r"] = self.outcome.reply
        else:
            body["e"] = self.outcome.error
        return codec.pack(body)

    @classmethod
    def decode(cls, data: bytes) -> InvocationRecord:
        body = codec.unpack(data)
        return cls(
            method=body["m"],
            args=body["a"],
            steps=body["s"],
            outcome=Outcome(reply=body.get("r"), error=body.get("e")),
            committed_at=body["t"],
            idempotency_key=body.get("k"),
            outbox=body.get("o", []),
            kind=body["w"][0] if "w" in body else "call",
            run=body["w"][1] if "w" in body else None,
        )


def fingerprint(method: str, args: dict[str, Any]) -> str:
    """Identifies what a call asked for, to refuse an idempotency key reused for another."""
    items = list(args.items())
    if len(items) > 1:
        items.sort()  # as sorted() would; most calls have one argument or none
    return hashlib.blake2b(codec.pack([method, items]), digest_size=8).hexdigest()


@dataclass(slots=True)
class DedupEntry:
    seq: int
    fingerprint: str
    outcome: Outcome
    at: float


# The entries of every window that has none yet: shared, never written (``add`` replaces it).
_NO_ENTRIES: dict[str, DedupEntry] = {}


@dataclass(slots=True)
class DedupWindow:
    """The recorded outcome of recent keyed invocations, kept across snapshots.

    Bounded by count and by age: an entry is dropped only once it is both beyond the newest
    ``size`` entries and older than ``max_age`` seconds... unless ``size`` is exceeded tenfold,
    which bounds memory even under a burst of keys. A window gets a dict of its own with
    its first entry: most idle activations have none.
    """

    size: int
    max_age: float
    entries: dict[str, DedupEntry] = field(default_factory=lambda: _NO_ENTRIES)
    # Each entry's row of ``dump()``, packed by an earlier ``dump_packed()``: a hot actor's
    # window holds thousands of entries and is snapshotted every few hundred calls, so
    # packing them all again each time made its snapshots, and the turns waiting behind
    # them, the slowest of its calls.
    packed: dict[str, bytes] | None = None

    def get(self, key: str) -> DedupEntry | None:
        return self.entries.get(key)

    def add(self, key: str, entry: DedupEntry) -> None:
        if self.entries is _NO_ENTRIES:
            self.entries = {}
        if self.packed is not None:
            self.packed.pop(key, None)
        self.entries[key] = entry

    def prune(self, now: float) -> None:
        excess = len(self.entries) - self.size
        if excess <= 0:
            return
        hard_excess = len(self.entries) - 10 * max(self.size, 1)
        for key in list(self.entries)[:excess]:  # dicts keep insertion order: oldest first
            if hard_excess > 0 or now - self.entries[key].at > self.max_age:
                del self.entries[key]
                if self.packed is not None:
                    self.packed.pop(key, None)
                hard_excess -= 1
            else:
                break

    def dump(self) -> list[Any]:
        return [_row(key, e) for key, e in self.entries.items()]

    def dump_packed(self) -> bytes:
        """``codec.pack(self.dump())``, packing only the entries added since the last call."""
        entries = self.entries
        if not entries:
            return codec.array_header(0)
        packed = self.packed
        if packed is None:
            packed = self.packed = {}
        parts = [codec.array_header(len(entries))]
        for key, entry in entries.items():
            row = packed.get(key)
            if row is None:
                row = packed[key] = codec.pack(_row(key, entry))
            parts.append(row)
        return b"".join(parts)

    def load(self, rows: list[Any]) -> None:
        for key, seq, fp, reply, error, at in rows:
            self.add(key, DedupEntry(seq, fp, Outcome(reply, error), at))


def _row(key: str, e: DedupEntry) -> list[Any]:
    return [key, e.seq, e.fingerprint, e.outcome.reply, e.outcome.error, e.at]


@dataclass(slots=True)
class SnapshotBody:
    """An actor's state (plain data; None for entities) and its dedup window.

    To encode, the window may come as ``dedup_packed`` (``DedupWindow.dump_packed()``)
    instead of as ``dedup`` rows; decoding always gives the rows.
    """

    state: Any
    dedup: list[Any]
    taken_at: float
    workflows: dict[str, list[Step]] = field(default_factory=dict)  # steps of running runs
    dedup_packed: bytes | None = None

    def encode(self) -> bytes:
        """The msgpack map ``{v, st, d, t[, wf]}``; ``dedup_packed`` is spliced in as is,
        giving the very bytes that packing the rows would."""
        dedup = self.dedup_packed
        if dedup is None:
            dedup = codec.pack(self.dedup)
        pairs: list[tuple[str, bytes]] = [
            ("v", codec.pack(RECORD_VERSION)),
            ("st", codec.pack(self.state)),
            ("d", dedup),
            ("t", codec.pack(self.taken_at)),
        ]
        if self.workflows:
            pairs.append(("wf", codec.pack(self.workflows)))
        parts = [codec.map_header(len(pairs))]
        for name, value in pairs:
            parts += (codec.pack(name), value)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> SnapshotBody:
        body = codec.unpack(data)
        return cls(
            state=body.get("st"),
            dedup=body.get("d", []),
            taken_at=body.get("t", 0.0),
            workflows=body.get("wf", {}),
        )
