"""The Lua scripts behind every redis storage write, how they are run, and what they reply.

Each fenced write is one script, so the fence check and the write are one atomic step on
the server. Lua scripts have no rollback: a script that fails after a write leaves that
write in place. So every script reads and validates everything first and returns early
with a status, and only then writes, using commands that cannot fail on keys of the right
type. The keys a script touches all share one hash slot (see ``redis_keys``).

Replies of fenced scripts are arrays whose first element is a status:
``{0, ...}`` done, ``{1, silo, epoch}`` fenced (the partition's current holder, nil if
none), ``{2}`` the journal record's seq already exists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from bayou.errors import FencedWrite, StorageError
from bayou.storage.contract import ActorKey, Fence

OK = 0
FENCED = 1
DUPLICATE = 2
FAILED = 3  # COMMIT_MANY only: the commit's own script error, {3, message}


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script's source and its SHA1, the name EVALSHA knows it by once it is loaded."""

    name: str
    source: bytes
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source).hexdigest())


# Whether ARGV[1]@ARGV[2] still holds the partition whose ownership hash is `own`.
_FENCE = """
local function fence_error(own, silo, epoch)
  local held = redis.call('HMGET', own, 'silo', 'epoch')
  if held[1] and held[1] == silo and held[2] == epoch then
    return nil
  end
  return {1, held[1], held[2]}
end
"""

# KEYS: own. ARGV: silo, dead silo... Returns the epoch now held, or -1.
CLAIM = LuaScript(
    "claim",
    b"""
local held = redis.call('HMGET', KEYS[1], 'silo', 'epoch')
local epoch = tonumber(held[2] or '0')
if held[1] == ARGV[1] then
  return epoch
end
if held[1] then
  local dead = false
  for i = 2, #ARGV do
    if ARGV[i] == held[1] then dead = true break end
  end
  if not dead then return -1 end
end
epoch = epoch + 1
redis.call('HSET', KEYS[1], 'silo', ARGV[1], 'epoch', string.format('%d', epoch))
return epoch
""",
)

# KEYS: own. ARGV: silo, epoch. Returns 1 if released, 0 if the fence did not hold.
RELEASE = LuaScript(
    "release",
    (
        _FENCE
        + """
if fence_error(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], 'silo')
return 1
"""
    ).encode(),
)

# The body of one commit, as a Lua function of its KEYS and ARGV (parameters that shadow the
# globals, so the same text serves the one-commit and the many-commit script).
# KEYS: own, inboxes, journal, snapshot, kv, inbox, inbox_order, steps, journal_scratch,
# reminders, reminder_index, outboxes (ActorKeys.all()).
# ARGV: silo, epoch, seq, data, member, has_ack, ack, has_clear, step_prefix,
#       n_set, (kv key, value) * n_set, n_del, kv key * n_del,
#       n_remind, (name, reminder member, due score, reminder value) * n_remind,
#       n_cancel, (name, reminder member) * n_cancel, sends ('1' if the record has tells).
_APPLY_COMMIT = (
    _FENCE
    + """
-- The journal half of a commit, all a plain turn needs: fence, duplicate, append.
-- Returns nil once the record is appended, or the reply that refuses it.
local function append_record(own, journal, snapshot, scratch, silo, epoch, seq_text, data)
  local err = fence_error(own, silo, epoch)
  if err then return err end
  local seq = tonumber(seq_text)
  local id = seq_text .. '-1'
  local snap = redis.call('HGET', snapshot, 'seq')
  -- A seq at or below the snapshot existed once and was trimmed: still a duplicate.
  if snap and seq <= tonumber(snap) then return {2} end

  -- Validated but for the duplicate check, which XADD itself makes in the common case: a
  -- seq above the stream's last id is new. It refuses any other id, writing nothing.
  local added = redis.pcall('XADD', journal, id, 'd', data)
  if type(added) == 'table' and added.err then
    if #redis.call('XRANGE', journal, id, id) > 0 then return {2} end
    -- seq is new but below the stream's last id (records committed out of order). Streams
    -- only append (and XDEL leaves tombstones that XTRIM MINID trips over), so write the
    -- whole journal in order into a fresh stream and rename it over the old one.
    redis.call('DEL', scratch)
    local inserted = false
    for _, entry in ipairs(redis.call('XRANGE', journal, '-', '+')) do
      if not inserted and tonumber(string.match(entry[1], '^%d+')) > seq then
        redis.call('XADD', scratch, id, 'd', data)
        inserted = true
      end
      redis.call('XADD', scratch, entry[1], unpack(entry[2]))
    end
    if not inserted then redis.call('XADD', scratch, id, 'd', data) end
    redis.call('RENAME', scratch, journal)
  end
  return nil
end

-- Remove the inbox message a turn consumed (and its actor from the partition's set of
-- actors with waiting messages once none is left).
local function ack_message(inboxes, inbox, order, member, id)
  if redis.call('HDEL', inbox, id) == 1 then
    redis.call('ZREM', order, id)
    if redis.call('HLEN', inbox) == 0 then redis.call('SREM', inboxes, member) end
  end
end

-- A turn that wrote its record and consumed an inbox message, nothing else (a tell's).
local function append_and_ack(own, journal, snapshot, scratch, inboxes, inbox, order,
                              silo, epoch, seq_text, data, member, id)
  local refused = append_record(own, journal, snapshot, scratch, silo, epoch, seq_text, data)
  if refused then return refused end
  ack_message(inboxes, inbox, order, member, id)
  return nil
end

local function apply_commit(KEYS, ARGV)
  local refused = append_record(KEYS[1], KEYS[3], KEYS[4], KEYS[9], ARGV[1], ARGV[2], ARGV[3],
                                ARGV[4])
  if refused then return refused end

  -- Chunks keep unpack() well under Lua's C stack limit.
  local chunk = 1000
  local i = 10
  local n_set = tonumber(ARGV[i])
  i = i + 1
  local stop = i + 2 * n_set - 1
  for first = i, stop, 2 * chunk do
    redis.call('HSET', KEYS[5], unpack(ARGV, first, math.min(first + 2 * chunk - 1, stop)))
  end
  i = stop + 1
  local n_del = tonumber(ARGV[i])
  i = i + 1
  stop = i + n_del - 1
  for first = i, stop, chunk do
    redis.call('HDEL', KEYS[5], unpack(ARGV, first, math.min(first + chunk - 1, stop)))
  end
  i = stop + 1

  -- Reminders: a definition and its index entry change together; ZADD moves a replaced one.
  local n_remind = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n_remind do
    redis.call('HSET', KEYS[10], ARGV[i], ARGV[i + 3])
    redis.call('ZADD', KEYS[11], ARGV[i + 2], ARGV[i + 1])
    i = i + 4
  end
  local n_cancel = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n_cancel do
    redis.call('HDEL', KEYS[10], ARGV[i])
    redis.call('ZREM', KEYS[11], ARGV[i + 1])
    i = i + 2
  end

  -- Listed until a snapshot covers this record (its tells are out by then).
  if ARGV[i] == '1' then
    local listed = redis.call('HGET', KEYS[12], ARGV[5])
    if not listed or tonumber(listed) < tonumber(ARGV[3]) then
      redis.call('HSET', KEYS[12], ARGV[5], ARGV[3])
    end
  end

  if ARGV[6] == '1' then ack_message(KEYS[2], KEYS[6], KEYS[7], ARGV[5], ARGV[7]) end

  if ARGV[8] == '1' then
    local prefix = ARGV[9]
    local doomed = {}
    for _, f in ipairs(redis.call('HKEYS', KEYS[8])) do
      if string.sub(f, 1, #prefix) == prefix then doomed[#doomed + 1] = f end
    end
    for first = 1, #doomed, chunk do
      redis.call('HDEL', KEYS[8], unpack(doomed, first, math.min(first + chunk - 1, #doomed)))
    end
  end
  return {0}
end
"""
)

# One commit: KEYS and ARGV as ``_APPLY_COMMIT`` takes them. Used where one script run may
# only touch one hash slot (Redis Cluster), one run per commit, all in one pipeline.
COMMIT = LuaScript("commit", (_APPLY_COMMIT + "return apply_commit(KEYS, ARGV)\n").encode())

# Many commits in one run, on a single Redis (the keys of a batch span slots, which Redis
# Cluster refuses). ARGV: for each commit its argument count, then its arguments; KEYS:
# each commit's keys in turn. A commit of 4 arguments is a plain append (silo, epoch, seq,
# data; keys own, journal, snapshot, journal_scratch), of 6 an append that also acks an
# inbox message (those, then member and message id; the keys, then inboxes, inbox and
# inbox_order), any other count a whole commit (the 12 keys and the ARGV of
# ``_APPLY_COMMIT``): most turns write nothing but their record (and a tell's, its ack),
# and sending them the empty rest would cost more than appending. Each commit runs under pcall,
# so one that fails (a redis error after it validated, as a key of the wrong type) fails
# alone, as it would in its own script run; its reply is {3, message}. Replies: one per
# commit, in order, the number 0 for a commit done (cheaper to read than {0}).
COMMIT_MANY = LuaScript(
    "commit_many",
    (
        _APPLY_COMMIT
        + """
local replies = {}
local a = 0
local k = 0
local n = 0
while a < #ARGV do
  local count = tonumber(ARGV[a + 1])
  local ok, reply
  if count == 4 then
    ok, reply = pcall(append_record, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
                      ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5])
    k = k + 4
  elseif count == 6 then
    ok, reply = pcall(append_and_ack, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
                      KEYS[k + 5], KEYS[k + 6], KEYS[k + 7], ARGV[a + 2], ARGV[a + 3],
                      ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7])
    k = k + 7
  else
    local keys = {}
    for j = 1, 12 do keys[j] = KEYS[k + j] end
    local args = {}
    for j = 1, count do args[j] = ARGV[a + 1 + j] end
    ok, reply = pcall(apply_commit, keys, args)
    k = k + 12
  end
  n = n + 1
  if ok then
    if reply == nil or reply[1] == 0 then reply = 0 end
    replies[n] = reply
  else
    if type(reply) == 'table' then reply = reply.err or cjson.encode(reply) end
    replies[n] = {3, tostring(reply)}
  end
  a = a + 1 + count
end
return replies
"""
    ).encode(),
)

# Everything an activation reads, for many actors at once, on a single Redis (a batch spans
# slots). Reads only: nothing to fence. KEYS: each actor's snapshot, journal, steps, inbox
# order and inbox in turn. ARGV: the journal page size. Replies, per actor: the snapshot's
# {seq, data} (nil when absent), the first journal page, the steps hash and the inbox hash
# as flat lists, and the inbox ids in order. One run is one instant, as MULTI/EXEC was.
LOAD_MANY = LuaScript(
    "load_many",
    b"""
local page = ARGV[1]
local replies = {}
for i = 0, #KEYS / 5 - 1 do
  local k = i * 5
  replies[i + 1] = {
    redis.call('HMGET', KEYS[k + 1], 'seq', 'data'),
    redis.call('XRANGE', KEYS[k + 2], '-', '+', 'COUNT', page),
    redis.call('HGETALL', KEYS[k + 3]),
    redis.call('ZRANGE', KEYS[k + 4], 0, -1),
    redis.call('HGETALL', KEYS[k + 5]),
  }
end
return replies
""",
)

# Read-only: an actor's waiting messages at one instant. KEYS: inbox_order, inbox.
# Returns {ids in arrival order, the inbox hash as a flat list}.
INBOX_READ = LuaScript(
    "inbox_read",
    b"""
return {redis.call('ZRANGE', KEYS[1], 0, -1), redis.call('HGETALL', KEYS[2])}
""",
)

# KEYS: inboxes, inbox. ARGV: the actor's member of inboxes. Drops the member if its inbox
# is empty (returns 1), as the script that emptied it should have; else returns 0. Not
# fenced: it only restores "listed while a message waits", whoever runs it.
INBOXES_PRUNE = LuaScript(
    "inboxes_prune",
    b"""
if redis.call('HLEN', KEYS[2]) > 0 then return 0 end
redis.call('SREM', KEYS[1], ARGV[1])
return 1
""",
)

# KEYS: own, snapshot, journal, outboxes. ARGV: silo, epoch, seq, data, trim id
# (<seq + 1>-0), the actor's member of outboxes.
WRITE_SNAPSHOT = LuaScript(
    "write_snapshot",
    (
        _FENCE
        + """
local err = fence_error(KEYS[1], ARGV[1], ARGV[2])
if err then return err end
local stored = redis.call('HGET', KEYS[2], 'seq')
-- Same seq replaces; strictly older never moves the actor back in time.
if stored and tonumber(stored) > tonumber(ARGV[3]) then return {0} end
redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'data', ARGV[4])
redis.call('XTRIM', KEYS[3], 'MINID', ARGV[5])
local listed = redis.call('HGET', KEYS[4], ARGV[6])
if listed and tonumber(listed) <= tonumber(ARGV[3]) then redis.call('HDEL', KEYS[4], ARGV[6]) end
return {0}
"""
    ).encode(),
)

# KEYS: own, inbox, inbox_order, inboxes. ARGV: silo, epoch, message id, data, member.
# Returns {0, 1} if stored, {0, 0} if a message with that id is waiting already.
_INBOX_PUT = (
    _FENCE
    + """
local function inbox_put(own, inbox, order, inboxes, silo, epoch, id, data, member)
  local err = fence_error(own, silo, epoch)
  if err then return err end
  if redis.call('HSETNX', inbox, id, data) == 0 then return {0, 0} end
  local last = redis.call('ZREVRANGE', order, 0, 0, 'WITHSCORES')
  local score = 1
  if last[2] then score = tonumber(last[2]) + 1 end
  redis.call('ZADD', order, string.format('%d', score), id)
  redis.call('SADD', inboxes, member)
  return {0, 1}
end
"""
)

INBOX_PUT = LuaScript(
    "inbox_put",
    (
        _INBOX_PUT
        + """
return inbox_put(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                 ARGV[5])
"""
    ).encode(),
)

# Many inbox puts in one run, on a single Redis (the keys span slots), as ``run_batch``
# lays them out. KEYS: the 4 keys of each put in turn; ARGV: each put's argument count (5)
# and arguments. Each put runs under pcall, so one that fails fails alone ({3, message});
# replies: one per put, in order, as INBOX_PUT's.
INBOX_PUT_MANY = LuaScript(
    "inbox_put_many",
    (
        _INBOX_PUT
        + """
local replies = {}
local n = 0
local a = 0
while a < #ARGV do
  local k = n * 4
  local ok, reply = pcall(inbox_put, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
                          ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
  a = a + 1 + tonumber(ARGV[a + 1])
  n = n + 1
  if ok then
    replies[n] = reply
  else
    if type(reply) == 'table' then reply = reply.err or cjson.encode(reply) end
    replies[n] = {3, tostring(reply)}
  end
end
return replies
"""
    ).encode(),
)

# KEYS: own, steps. ARGV: silo, epoch, step field, data.
STEP_PUT = LuaScript(
    "step_put",
    (
        _FENCE
        + """
local err = fence_error(KEYS[1], ARGV[1], ARGV[2])
if err then return err end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return {0}
"""
    ).encode(),
)

# KEYS: own, reminders, reminder_index. ARGV: silo, epoch, name, reminder member,
# due score, reminder value. Creates or replaces; ZADD moves the index entry of a replaced one.
REMINDER_SET = LuaScript(
    "reminder_set",
    (
        _FENCE
        + """
local err = fence_error(KEYS[1], ARGV[1], ARGV[2])
if err then return err end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
return {0}
"""
    ).encode(),
)

# KEYS: own, reminders, reminder_index. ARGV: silo, epoch, name, reminder member.
# Returns {0, 1} if the reminder existed, {0, 0} if not.
REMINDER_CANCEL = LuaScript(
    "reminder_cancel",
    (
        _FENCE
        + """
local err = fence_error(KEYS[1], ARGV[1], ARGV[2])
if err then return err end
local existed = redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[4])
return {0, existed}
"""
    ).encode(),
)

# Read-only: one round of ``reminders_due``'s merge on a single Redis, in one script run
# instead of one ZRANGEBYSCORE per partition. KEYS: reminder indexes. ARGV: max score, then
# (offset, count) per key. Returns, per key, its entries as {member, score, ...}.
EARLIEST_DUE = LuaScript(
    "earliest_due",
    b"""
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', ARGV[1], 'WITHSCORES',
                      'LIMIT', ARGV[2 * i], ARGV[2 * i + 1])
end
return out
""",
)

SCRIPTS: tuple[LuaScript, ...] = (
    CLAIM,
    RELEASE,
    COMMIT,
    COMMIT_MANY,
    WRITE_SNAPSHOT,
    INBOX_PUT,
    INBOX_PUT_MANY,
    INBOXES_PRUNE,
    STEP_PUT,
    REMINDER_SET,
    REMINDER_CANCEL,
    EARLIEST_DUE,
    LOAD_MANY,
    INBOX_READ,
)


# -- running -------------------------------------------------------------------------------

Call = tuple[Sequence[bytes], Sequence[Any]]  # one script run: its KEYS and its ARGV
Wait = tuple[int, int]  # WAIT's arguments: replicas that must confirm, and milliseconds


async def run(
    client: redis.asyncio.Redis, script: LuaScript, keys: Sequence[bytes], args: Sequence[Any]
) -> Any:
    """Run ``script`` by SHA; load it once if the server does not know it (NOSCRIPT, as after
    a restart or a SCRIPT FLUSH) and run it again: a NOSCRIPT reply means it never ran."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, len(keys), *keys, *args)


async def run_many(
    client: redis.asyncio.Redis,
    script: LuaScript,
    calls: Sequence[Call],
    wait: Wait | None = None,
) -> list[Any]:
    """Run ``script`` once per call, all in one pipeline: one network round trip for the lot.

    Replies are in call order; a script's own error reply is returned in its place. Calls
    refused with NOSCRIPT never ran, so they are sent again (in order, in one more pipeline)
    once the script is loaded. redis-py's ``Script`` objects are not used because their
    pipeline support costs an extra SCRIPT EXISTS round trip on every execute. With
    ``wait``, each pipeline ends with ``WAIT`` and every reply of a pipeline whose writes
    too few replicas confirmed becomes a ``StorageError`` (``confirm``).
    """
    replies, confirmed = await _pipeline(client, script, calls, wait)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        await client.script_load(script.source)
        again, confirmed = await _pipeline(client, script, [calls[i] for i in missing], wait)
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return confirm(replies, wait, confirmed)


async def run_batch(
    client: redis.asyncio.Redis,
    script: LuaScript,
    calls: Sequence[Call],
    wait: Wait | None = None,
) -> list[Any]:
    """Run ``script`` (one that loops over calls, as ``COMMIT_MANY``) once for all ``calls``:
    KEYS are every call's keys in turn, ARGV every call's argument count and arguments.

    Returns the script's replies, one per call; if the run as a whole failed, its error in
    place of each reply (which ``outcome`` reports as a ``StorageError``: not known to
    have landed, so the runtime reloads those actors from storage). With ``wait``, the run
    and a ``WAIT`` share one pipeline (WAIT counts the writes of its own connection), and
    a run too few replicas confirmed fails every call alike.
    """
    keys: list[Any] = []
    args: list[Any] = []
    for call_keys, call_args in calls:
        keys += call_keys
        args.append(len(call_args))
        args += call_args
    if wait is None:
        try:
            replies = await run(client, script, keys, args)
        except ResponseError as exc:
            return [exc] * len(calls)
    else:
        [replies], confirmed = await _pipeline(client, script, [(keys, args)], wait)
        if isinstance(replies, NoScriptError):
            await client.script_load(script.source)
            [replies], confirmed = await _pipeline(client, script, [(keys, args)], wait)
        if isinstance(replies, ResponseError):
            return [replies] * len(calls)
        [replies] = confirm([replies], wait, confirmed)
        if isinstance(replies, StorageError):
            return [replies] * len(calls)
    if not isinstance(replies, list) or len(replies) != len(calls):
        error = StorageError(f"unexpected reply from {script.name}: {replies!r:.200}")
        return [error] * len(calls)
    return replies


async def _pipeline(
    client: redis.asyncio.Redis, script: LuaScript, calls: Sequence[Call], wait: Wait | None
) -> tuple[list[Any], int]:
    """The calls' replies, and how many replicas confirmed them (0 without ``wait``)."""
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        # execute_command, not pipe.evalsha: Redis Cluster's pipeline refuses the latter
        # (a script without keys has no slot), and routes this one by its keys.
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    if wait is not None:
        pipe.execute_command("WAIT", wait[0], wait[1])
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    if wait is None:
        return replies, 0
    confirmed = replies.pop()
    if isinstance(confirmed, Exception):
        raise confirmed
    return replies, int(confirmed)


def confirm(replies: list[Any], wait: Wait | None, confirmed: int) -> list[Any]:
    """``replies``, each a ``StorageError`` if fewer than ``wait[0]`` replicas confirmed
    them: written on the primary, but lost if it failed over now, so not acknowledged."""
    if wait is None or confirmed >= wait[0]:
        return replies
    error = StorageError(
        f"written but confirmed by {confirmed} of {wait[0]} replicas within {wait[1]} ms"
    )
    return [reply if isinstance(reply, Exception) else error for reply in replies]


# -- replies -------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else None


def fenced_write(fence: Fence, reply: Sequence[Any]) -> FencedWrite:
    """The FencedWrite for a ``{1, silo, epoch}`` reply, worded as the other backends do."""
    silo = _text(reply[1]) if len(reply) > 1 else None
    epoch = int(reply[2]) if len(reply) > 2 and reply[2] is not None else 0
    return FencedWrite(
        f"partition {fence.partition} is held by {silo}@{epoch}, not {fence.silo}@{fence.epoch}",
        {"partition": fence.partition, "silo": silo, "epoch": epoch},
    )


def wrong_partition(actor: ActorKey, fence: Fence) -> FencedWrite:
    """A fence only proves ownership of its own partition; checked before any round trip."""
    return FencedWrite(
        f"fence for partition {fence.partition} cannot write {actor} of partition {actor.partition}"
    )


def status(reply: Any) -> int:
    """The status of a fenced script's reply; StorageError if it is not one."""
    if not isinstance(reply, list) or not reply or not isinstance(reply[0], int):
        raise StorageError(f"unexpected reply from a redis storage script: {reply!r}")
    return reply[0]


def outcome(reply: Any, actor: ActorKey, fence: Fence, seq: int) -> BaseException | None:
    """What one commit script's reply means, as ``Storage.commit`` reports it."""
    if reply == 0 and type(reply) is int:  # COMMIT_MANY's "done"
        return None
    if isinstance(reply, Exception):
        # The script itself failed (it validates before writing, so it wrote nothing).
        return StorageError(f"{actor}: redis commit of record {seq} failed: {reply}")
    code = status(reply)
    if code == OK:
        return None
    if code == FENCED:
        return fenced_write(fence, reply)
    if code == DUPLICATE:
        return StorageError(f"{actor}: journal record {seq} already exists")
    if code == FAILED:
        # The commit failed inside the batch script (it validates before writing, so it
        # wrote nothing); the other commits of the batch went on.
        detail = _text(reply[1]) if len(reply) > 1 else None
        return StorageError(f"{actor}: redis commit of record {seq} failed: {detail}")
    return StorageError(f"{actor}: unexpected commit status {code}")


def check(reply: Any, fence: Fence) -> list[Any]:
    """A fenced script's reply when it succeeded; raises FencedWrite when fenced."""
    code = status(reply)
    if code == FENCED:
        raise fenced_write(fence, reply)
    if code != OK:
        raise StorageError(f"unexpected redis storage script status {code}")
    result: list[Any] = reply
    return result
