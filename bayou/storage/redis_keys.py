"""Every Redis key bayou uses — storage and membership — and how names are encoded into them.

Layout (``c`` = cluster name, ``p`` = partition number, ``A`` = an encoded actor)::

    bayou:{c:p}:own         hash    {silo, epoch}: the partition's owner; ``silo`` absent
                                    once released, ``epoch`` kept for the next claim
    bayou:{c:p}:inboxes     set     encoded actors of the partition with waiting messages
    bayou:{c:p}:ob          hash    encoded actor -> seq of its last journal record with
                                    tells, while no snapshot covers that record
    bayou:{c:p}:j:A         stream  journal; entry id ``<seq>-1``, one field ``d`` = record
    bayou:{c:p}:jx:A        stream  scratch copy of the journal, alive only inside the commit
                                    script that inserts a record below the newest one
    bayou:{c:p}:s:A         hash    snapshot {seq, data}
    bayou:{c:p}:kv:A        hash    entity kv: kv key -> value
    bayou:{c:p}:in:A        hash    inbox messages: message id -> payload
    bayou:{c:p}:iq:A        zset    inbox order: message id scored by arrival (1, 2, ...)
    bayou:{c:p}:st:A        hash    pending steps: step field (below) -> step result
    bayou:{c:p}:rd          zset    the partition's reminder index: reminder member (below)
                                    scored by its due time (epoch seconds, a double)
    bayou:{c:p}:rm:A        hash    the actor's reminders: UTF-8 name -> reminder value (below)

No key has a TTL: everything here is durable state, removed only by the operations that
own it (a commit's ack and clear_steps, a snapshot's trim, a reminder's cancel). Redis
drops a hash or sorted set when its last field or member goes, so an actor without
reminders and a partition without reminders leave no ``rm``/``rd`` key behind.

Every key of one partition carries the hash tag ``{c:p}``, so all keys an operation
touches hash to one slot: one Lua script can check the fence and write atomically, and the
layout runs unchanged on Redis Cluster. The cluster name may not contain ``{`` or ``}``
(they would end the tag early); it may contain ``:``, since the partition is the tag's last
``:``-separated part and is a plain integer.

**Actor encoding** ``A`` = ``<n>:<type>:<key>`` where ``n`` is the byte length of the
UTF-8 type name. Types and keys may contain ``:`` (or anything else): the length says
where the type ends, and the key runs to the end. The same bytes name an actor in the
``inboxes`` set, so the set's members decode back to ``(type, key)``.

**Step field** = ``<n>:<invocation>:<index>`` where ``n`` is the byte length of the UTF-8
invocation id; ``<n>:<invocation>:`` is thus a prefix no other invocation's fields share.

**Reminder member** (of ``rd``) = the type, the key and the name, each UTF-8 with every
zero byte escaped as the bytes ``00 ff`` and closed by the bytes ``00 01``. Redis orders
members of equal score by their bytes, and this encoding keeps that order equal to
ordering ``(type, key, name)`` as Python compares strings, so reminders due at the same
instant come in the same order from every backend. ``rm:A`` and ``rd`` always change
together (in one script), so a reminder in one is in the other with the same due time.

**Reminder value** (in ``rm:A``) = ``<due>:<period>:<data>``: ``due`` and ``period`` as
``repr(float)`` (shortest text that reads back as the same double; ``period`` empty for a
one-shot reminder), then the opaque data bytes to the end.

**Membership** keys carry the cluster's own tag, apart from any partition (``bayou.
placement.redis_membership`` uses them)::

    bayou:{c}:members   hash     silo id -> msgpack record {address, status,
                                 lease_expires, registered_at}; times are integer
                                 microseconds of the Redis server's clock
    bayou:{c}:version   string   integer counter, INCR'd by every change of status (and
                                 by a ``forget`` that drops records); absent means 0
    bayou:{c}:config    hash     cluster constants fixed by the first silo (``partitions``)
    bayou:{c}:dead      hash     tombstones: silo id -> the server time (microseconds) it
                                 was declared dead; never removed, so a dead identity can
                                 never register or renew again, even after ``forget``

No membership key has a TTL either: membership is the cluster's memory of who may own
partitions, and an expiring tombstone would let a dead silo back in. Leases are fields
inside the records, compared with the server's clock by the scripts, not Redis TTLs. The
tag ``{c}`` puts the membership keys in one slot, since every membership script touches
several of them, which Redis Cluster allows only within a slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from bayou.storage.contract import ActorKey

PREFIX = b"bayou"


def encode_name(name: str) -> bytes:
    """``<n>:<name>`` with ``n`` the byte length: a self-delimiting encoding of ``name``."""
    raw = name.encode()
    return b"%d:%s" % (len(raw), raw)


def encode_actor(actor: ActorKey) -> bytes:
    """The actor part of its keys, ``<n>:<type>:<key>``; the partition lives in the tag."""
    return b"%s:%s" % (encode_name(actor.type), actor.key.encode())


def decode_actor(encoded: bytes, partition: int) -> ActorKey:
    """The inverse of ``encode_actor``; raises ValueError on bytes it did not produce."""
    type_name, rest = _split_name(encoded)
    if not rest.startswith(b":"):
        raise ValueError(f"not an encoded actor: {encoded!r}")
    return ActorKey(type_name, rest[1:].decode(), partition)


def step_prefix(invocation: str) -> bytes:
    """The prefix shared by exactly the step fields of ``invocation``."""
    return encode_name(invocation) + b":"


def step_field(invocation: str, index: int) -> bytes:
    return b"%s%d" % (step_prefix(invocation), index)


def decode_step_field(field: bytes) -> tuple[str, int]:
    """``(invocation, index)`` of a step field; raises ValueError on anything else."""
    invocation, rest = _split_name(field)
    if not rest.startswith(b":"):
        raise ValueError(f"not a step field: {field!r}")
    return invocation, int(rest[1:])


def _split_name(data: bytes) -> tuple[str, bytes]:
    """Decode a leading ``encode_name`` and return it with the bytes after it."""
    length, colon, rest = data.partition(b":")
    if not colon or not length.isdigit():
        raise ValueError(f"no length-prefixed name in {data!r}")
    n = int(length)
    if len(rest) < n:
        raise ValueError(f"name in {data!r} is shorter than its length {n}")
    return rest[:n].decode(), rest[n:]


def reminder_member(actor: ActorKey, name: str) -> bytes:
    """The reminder's member of its partition's ``rd`` index: ordered like (type, key, name)."""
    return b"".join(_ordered(part) for part in (actor.type, actor.key, name))


def _ordered(text: str) -> bytes:
    # \x00\xff sorts above \x00\x01, so a string sorts below every longer one it starts.
    return text.encode().replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def decode_reminder_member(member: bytes, partition: int) -> tuple[ActorKey, str]:
    """``(actor, name)`` of a reminder member; raises ValueError on bytes it did not produce."""
    parts: list[str] = []
    part = bytearray()
    at = 0
    while at < len(member):
        zero = member.find(b"\x00", at)
        if zero < 0 or zero + 1 == len(member):
            raise ValueError(f"not a reminder member: {member!r}")
        part += member[at:zero]
        marker = member[zero + 1]
        if marker == 0xFF:
            part.append(0)
        elif marker == 0x01:
            parts.append(part.decode())
            part = bytearray()
        else:
            raise ValueError(f"not a reminder member: {member!r}")
        at = zero + 2
    if part or len(parts) != 3:
        raise ValueError(f"not a reminder member: {member!r}")
    return ActorKey(parts[0], parts[1], partition), parts[2]


def score(value: float) -> bytes:
    """A finite float as text Redis reads back as the very same double (a zset score)."""
    return repr(float(value)).encode()


def encode_reminder_value(due: float, period: float | None, data: bytes) -> bytes:
    """``<due>:<period>:<data>``, ``period`` empty for a one-shot reminder."""
    return b"%s:%s:%s" % (score(due), b"" if period is None else score(period), data)


def decode_reminder_value(value: bytes) -> tuple[float, float | None, bytes]:
    """``(due, period, data)`` of a reminder value; raises ValueError on anything else."""
    due, _, rest = value.partition(b":")
    period, colon, data = rest.partition(b":")
    if not colon:
        raise ValueError(f"not a reminder value: {value[:80]!r}")
    return float(due), None if not period else float(period), data


def journal_id(seq: int) -> bytes:
    """The stream entry id of journal record ``seq`` (the commit script builds the same).

    The ``-1`` sequence part keeps every id above ``0-0``, which XADD refuses, so even a
    record with seq 0 has a valid id.
    """
    return b"%d-1" % seq


def journal_floor(seq: int) -> bytes:
    """The lowest stream id a record ``>= seq`` can have: XRANGE/XTRIM MINID bound."""
    return b"%d-0" % max(seq, 0)


def journal_seq(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[0])


@dataclass(frozen=True, slots=True)
class ActorKeys:
    """All keys of one actor plus the partition keys its scripts need, in one hash slot."""

    own: bytes
    inboxes: bytes
    journal: bytes
    journal_scratch: bytes
    snapshot: bytes
    kv: bytes
    inbox: bytes
    inbox_order: bytes
    steps: bytes
    reminders: bytes
    reminder_index: bytes
    outboxes: bytes
    member: bytes  # the actor as stored in ``inboxes`` and ``outboxes``

    def all(self) -> tuple[bytes, ...]:
        """Every key above (not ``member``, which is a value)."""
        return (
            self.own,
            self.inboxes,
            self.journal,
            self.snapshot,
            self.kv,
            self.inbox,
            self.inbox_order,
            self.steps,
            self.journal_scratch,
            self.reminders,
            self.reminder_index,
            self.outboxes,
        )


class KeySpace:
    """The key builders of one cluster; the cluster name is validated once, here."""

    def __init__(self, cluster: str) -> None:
        if not cluster or "{" in cluster or "}" in cluster:
            raise ValueError(f"cluster name {cluster!r} must be non-empty and free of '{{}}'")
        self.cluster = cluster
        self._cluster = cluster.encode()
        self._prefixes: dict[int, bytes] = {}  # partition -> b"bayou:{c:p}:"

    def tag(self, partition: int) -> bytes:
        """``{cluster:partition}``: Redis hashes only this part of every key below."""
        return b"{%s:%d}" % (self._cluster, partition)

    def _prefix(self, partition: int) -> bytes:
        prefix = self._prefixes.get(partition)
        if prefix is None:
            prefix = b"%s:%s:" % (PREFIX, self.tag(partition))
            if len(self._prefixes) < 65536:  # partitions are few (1024 by default)
                self._prefixes[partition] = prefix
        return prefix

    def _partition_key(self, partition: int, suffix: bytes) -> bytes:
        return self._prefix(partition) + suffix

    def owner(self, partition: int) -> bytes:
        """Hash ``{silo, epoch}``; no TTL."""
        return self._partition_key(partition, b"own")

    def inboxes(self, partition: int) -> bytes:
        """Set of encoded actors with waiting messages; no TTL, emptied by acks."""
        return self._partition_key(partition, b"inboxes")

    def outboxes(self, partition: int) -> bytes:
        """Hash encoded actor -> seq of its last record with tells; no TTL, emptied by
        the snapshots that cover those records."""
        return self._partition_key(partition, b"ob")

    def reminder_index(self, partition: int) -> bytes:
        """Sorted set of reminder members scored by due time; no TTL, emptied by cancels."""
        return self._partition_key(partition, b"rd")

    def _actor_key(self, actor: ActorKey, kind: bytes) -> bytes:
        return b"%s%s:%s" % (self._prefix(actor.partition), kind, encode_actor(actor))

    def journal(self, actor: ActorKey) -> bytes:
        """Stream of records, ids ``<seq>-1``; no TTL, trimmed by snapshots."""
        return self._actor_key(actor, b"j")

    def journal_scratch(self, actor: ActorKey) -> bytes:
        """Stream rebuilt in order and renamed over the journal, in one script; no TTL
        needed, it never outlives the script."""
        return self._actor_key(actor, b"jx")

    def snapshot(self, actor: ActorKey) -> bytes:
        """Hash ``{seq, data}``; no TTL."""
        return self._actor_key(actor, b"s")

    def kv(self, actor: ActorKey) -> bytes:
        """Hash kv key -> value; no TTL."""
        return self._actor_key(actor, b"kv")

    def inbox(self, actor: ActorKey) -> bytes:
        """Hash message id -> payload of waiting messages; no TTL, emptied by acks."""
        return self._actor_key(actor, b"in")

    def inbox_order(self, actor: ActorKey) -> bytes:
        """Sorted set of waiting message ids by arrival; no TTL, emptied by acks."""
        return self._actor_key(actor, b"iq")

    def steps(self, actor: ActorKey) -> bytes:
        """Hash step field -> result; no TTL, cleared by the invocation's commit."""
        return self._actor_key(actor, b"st")

    def reminders(self, actor: ActorKey) -> bytes:
        """Hash reminder name -> reminder value; no TTL, emptied by cancels."""
        return self._actor_key(actor, b"rm")

    def commit_keys(self, actor: ActorKey) -> tuple[tuple[bytes, ...], bytes]:
        """``(self.actor(actor).all(), member)``, built with as little work as a commit can
        afford (this runs once per journaled turn)."""
        p = self._prefix(actor.partition)
        a = b":" + encode_actor(actor)
        keys = (
            p + b"own",
            p + b"inboxes",
            p + b"j" + a,
            p + b"s" + a,
            p + b"kv" + a,
            p + b"in" + a,
            p + b"iq" + a,
            p + b"st" + a,
            p + b"jx" + a,
            p + b"rm" + a,
            p + b"rd",
            p + b"ob",
        )
        return keys, a[1:]

    def append_keys(self, actor: ActorKey) -> tuple[bytes, bytes, bytes, bytes]:
        """Owner, journal, snapshot and journal scratch keys: what a plain append touches."""
        p = self._prefix(actor.partition)
        a = b":" + encode_actor(actor)
        return p + b"own", p + b"j" + a, p + b"s" + a, p + b"jx" + a

    def append_ack_keys(self, actor: ActorKey) -> tuple[tuple[bytes, ...], bytes]:
        """``append_keys`` then inboxes, inbox and inbox order, and the actor's member in
        the inboxes set: what a turn that consumed an inbox message touches."""
        p = self._prefix(actor.partition)
        member = encode_actor(actor)
        a = b":" + member
        keys = (p + b"own", p + b"j" + a, p + b"s" + a, p + b"jx" + a)
        return (*keys, p + b"inboxes", p + b"in" + a, p + b"iq" + a), member

    def inbox_put_keys(self, actor: ActorKey) -> tuple[tuple[bytes, bytes, bytes, bytes], bytes]:
        """Owner, inbox, inbox order and the partition's inbox set, and the actor's member
        in that set: what storing a message touches."""
        p = self._prefix(actor.partition)
        member = encode_actor(actor)
        a = b":" + member
        return (p + b"own", p + b"in" + a, p + b"iq" + a, p + b"inboxes"), member

    def actor(self, actor: ActorKey) -> ActorKeys:
        return ActorKeys(
            own=self.owner(actor.partition),
            inboxes=self.inboxes(actor.partition),
            journal=self.journal(actor),
            journal_scratch=self.journal_scratch(actor),
            snapshot=self.snapshot(actor),
            kv=self.kv(actor),
            inbox=self.inbox(actor),
            inbox_order=self.inbox_order(actor),
            steps=self.steps(actor),
            reminders=self.reminders(actor),
            reminder_index=self.reminder_index(actor.partition),
            outboxes=self.outboxes(actor.partition),
            member=encode_actor(actor),
        )


# -- membership (bayou.placement.redis_membership) ------------------------------------
def check_cluster_name(cluster: str) -> None:
    """Reject a cluster name that cannot live in a hash tag (or would be no name at all)."""
    if not cluster or "{" in cluster or "}" in cluster or any(c.isspace() for c in cluster):
        raise ValueError(f"invalid cluster name {cluster!r}: non-empty, no braces or spaces")


@dataclass(frozen=True, slots=True)
class MembershipKeys:
    """The keys of one cluster's membership, in the order the scripts take them."""

    members: str
    version: str
    dead: str
    config: str

    @classmethod
    def of(cls, cluster: str) -> MembershipKeys:
        check_cluster_name(cluster)
        prefix = f"bayou:{{{cluster}}}"
        return cls(
            members=f"{prefix}:members",
            version=f"{prefix}:version",
            dead=f"{prefix}:dead",
            config=f"{prefix}:config",
        )

    def all(self) -> list[str]:
        return [self.members, self.version, self.dead]
