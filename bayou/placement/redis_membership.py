"""Membership in Redis: the table every silo of a cluster shares.

Every change is one Lua script, so it is atomic, and every lease is computed from the
Redis server's clock (``TIME``) inside the script: silos whose own clocks disagree still
agree on whose lease has expired, and ``declare_dead`` cannot race a renewal. Keys and
their layout are in ``bayou.storage.redis_keys``.

A call that cannot reach Redis fails with ``MembershipUnavailable`` (a ``StorageError``)
within ``timeout`` seconds, never with a redis exception and never by hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bayou.codec import unpack
from bayou.errors import StorageError
from bayou.placement.membership import (
    LIFECYCLE,
    Member,
    Membership,
    MembershipView,
    SiloDeclaredDead,
    SiloStatus,
    check_lease,
)
from bayou.storage.redis_clients import ClientProfile, make_client
from bayou.storage.redis_keys import MembershipKeys

T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0
_US = 1_000_000  # the scripts keep times as integer microseconds: exact in Lua's doubles


class MembershipUnavailable(StorageError):
    """Redis could not be reached, or did not answer in time; the call may be retried."""


# -- scripts ---------------------------------------------------------------------------------
# Every script takes KEYS = members, version, dead (see bayou.storage.redis_keys). Records are
# msgpack maps written only by these scripts (cmsgpack), so Lua and Python agree on them.

_PROLOGUE = """
-- TIME is non-deterministic: replicate the script's effects, not the script (the
-- default since Redis 5; the call is for older servers and is a no-op where it is gone).
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local members, version, dead = KEYS[1], KEYS[2], KEYS[3]
"""

# Generated from LIFECYCLE, so Python and Lua cannot disagree on the order of statuses.
_RANK = f"local rank = {{{', '.join(f'{s.value} = {s.rank}' for s in LIFECYCLE)}}}\n"

# ARGV: silo, address, lease (us). -> {'ok', record} | {'dead'} | {'taken', status, address}
_REGISTER = (
    _PROLOGUE
    + """
local silo, address, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HEXISTS', dead, silo) == 1 then return {'dead'} end
local raw = redis.call('HGET', members, silo)
if raw then
  local m = cmsgpack.unpack(raw)
  -- Only a retry of the same registration may find the record already there.
  if m.status ~= 'joining' or m.address ~= address then
    return {'taken', m.status, m.address}
  end
  m.lease_expires = now + lease
  raw = cmsgpack.pack(m)
  redis.call('HSET', members, silo, raw)
  return {'ok', raw}
end
raw = cmsgpack.pack({address = address, status = 'joining',
                     lease_expires = now + lease, registered_at = now})
redis.call('HSET', members, silo, raw)
redis.call('INCR', version)
return {'ok', raw}
"""
)

# ARGV: silo, lease (us). -> {'ok', lease_expires} | {'dead'}
_RENEW = (
    _PROLOGUE
    + """
local silo, lease = ARGV[1], tonumber(ARGV[2])
if redis.call('HEXISTS', dead, silo) == 1 then return {'dead'} end
local raw = redis.call('HGET', members, silo)
if not raw then return {'dead'} end
local m = cmsgpack.unpack(raw)
if m.status == 'dead' then return {'dead'} end
m.lease_expires = now + lease
redis.call('HSET', members, silo, cmsgpack.pack(m))
return {'ok', m.lease_expires}
"""
)

# ARGV: silo, status. -> {'ok', version} | {'same'} | {'dead'} | {'backwards', status}
_SET_STATUS = (
    _PROLOGUE
    + _RANK
    + """
local silo, want = ARGV[1], ARGV[2]
if redis.call('HEXISTS', dead, silo) == 1 then return {'dead'} end
local raw = redis.call('HGET', members, silo)
if not raw then return {'dead'} end
local m = cmsgpack.unpack(raw)
if m.status == 'dead' then return {'dead'} end
if rank[want] < rank[m.status] then return {'backwards', m.status} end
if want == m.status then return {'same'} end
m.status = want
redis.call('HSET', members, silo, cmsgpack.pack(m))
if want == 'dead' then redis.call('HSET', dead, silo, now) end
return {'ok', redis.call('INCR', version)}
"""
)

# ARGV: silo. -> 1 if this call declared it dead, else 0
_DECLARE_DEAD = (
    _PROLOGUE
    + """
local silo = ARGV[1]
if redis.call('HEXISTS', dead, silo) == 1 then return 0 end
local raw = redis.call('HGET', members, silo)
if not raw then return 0 end
local m = cmsgpack.unpack(raw)
if m.status == 'dead' or m.lease_expires >= now then return 0 end
m.status = 'dead'
redis.call('HSET', members, silo, cmsgpack.pack(m))
redis.call('HSET', dead, silo, now)
redis.call('INCR', version)
return 1
"""
)

# ARGV: silos. -> how many records were dropped (only tombstoned silos' records go)
_FORGET = """
local members, version, dead = KEYS[1], KEYS[2], KEYS[3]
local dropped = 0
for _, silo in ipairs(ARGV) do
  if redis.call('HEXISTS', dead, silo) == 1 then
    dropped = dropped + redis.call('HDEL', members, silo)
  end
end
if dropped > 0 then redis.call('INCR', version) end
return dropped
"""


# KEYS: config. ARGV: name, value. -> the value stored under name (set now if absent)
_AGREE = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
"""

# Read-only. -> {members as a flat list, version or nil, the server's TIME}
_READ = """
return {redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('TIME')}
"""


def _profile(timeout: float) -> ClientProfile:
    return ClientProfile(
        client_name="bayou-membership",
        socket_timeout=timeout,
        connect_timeout=timeout,
        # One immediate retry on a broken connection (a pooled connection that went stale
        # when Redis restarted or failed over), none on a timeout: the deadline of every
        # call bounds it anyway.
        retries=1,
        backoff_base=0.0,
        backoff_cap=0.0,
        retry_on_timeout=False,
        max_connections=16,  # a heartbeat, a read and a rare status change at a time
        blocking=True,  # a call beyond that waits (within its deadline) instead of failing
        health_check_interval=0,
        hiredis_packing=False,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _member(silo: str, raw: bytes) -> Member:
    record = unpack(raw)
    return Member(
        silo=silo,
        address=_text(record["address"]),
        status=SiloStatus(_text(record["status"])),
        lease_expires=record["lease_expires"] / _US,
        registered_at=record["registered_at"] / _US,
    )


def _lease_us(lease: float) -> int:
    check_lease(lease)
    return max(1, round(lease * _US))


class RedisMembership(Membership):
    """A ``Membership`` in one Redis database, shared by every silo of ``cluster``.

    ``client`` lets several components share a connection pool; a client passed in is not
    closed by ``close()``. Either way, calls are bounded by ``timeout`` seconds.
    """

    def __init__(
        self,
        url: str,
        cluster: str,
        *,
        client: aioredis.Redis | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._keys = MembershipKeys.of(cluster)
        self._timeout = timeout
        self._owns_client = client is None
        if client is None:
            client = make_client(url, _profile(timeout))
        self._redis = client
        self._register = client.register_script(_REGISTER)
        self._renew = client.register_script(_RENEW)
        self._set_status = client.register_script(_SET_STATUS)
        self._declare_dead = client.register_script(_DECLARE_DEAD)
        self._forget = client.register_script(_FORGET)
        self._read = client.register_script(_READ)
        self._agree = client.register_script(_AGREE)

    @property
    def keys(self) -> MembershipKeys:
        return self._keys

    async def _bounded(self, operation: Awaitable[T], what: str) -> T:
        """Await ``operation`` within the timeout, turning every redis failure into ours."""
        try:
            async with asyncio.timeout(self._timeout):
                return await operation
        except (TimeoutError, RedisTimeoutError) as exc:
            raise MembershipUnavailable(
                f"membership {what}: Redis did not answer within {self._timeout}s"
            ) from exc
        except (RedisConnectionError, OSError, RedisClusterException) as exc:
            # RedisClusterException: no node of a Redis Cluster reachable, or none serving
            # the membership slot (a shard down or failing over).
            raise MembershipUnavailable(f"membership {what}: Redis unreachable: {exc}") from exc
        except RedisError as exc:
            raise StorageError(f"membership {what}: Redis failed: {exc}") from exc

    async def _script(self, script: Any, what: str, *args: str | int) -> Any:
        return await self._bounded(script(keys=self._keys.all(), args=args), what)

    async def open(self) -> None:
        """Check that Redis answers, so a wrong URL fails at start rather than later."""
        await self._bounded(self._redis.ping(), "open")

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    async def register(self, silo: str, address: str, lease: float) -> Member:
        if not silo:
            raise ValueError("a silo id cannot be empty")
        reply = await self._script(self._register, "register", silo, address, _lease_us(lease))
        outcome = _text(reply[0])
        if outcome == "dead":
            raise SiloDeclaredDead(silo)
        if outcome == "taken":
            raise ValueError(
                f"silo {silo} is already registered ({_text(reply[1])} at {_text(reply[2])})"
            )
        return _member(silo, reply[1])

    async def renew(self, silo: str, lease: float) -> float:
        reply = await self._script(self._renew, "renew", silo, _lease_us(lease))
        if _text(reply[0]) == "dead":
            raise SiloDeclaredDead(silo)
        return int(reply[1]) / _US

    async def set_status(self, silo: str, status: SiloStatus) -> None:
        status = SiloStatus(status)
        reply = await self._script(self._set_status, "set_status", silo, status.value)
        outcome = _text(reply[0])
        if outcome == "dead":
            raise SiloDeclaredDead(silo)
        if outcome == "backwards":
            raise ValueError(f"silo {silo} cannot move back from {_text(reply[1])} to {status}")

    async def declare_dead(self, silo: str) -> bool:
        return int(await self._script(self._declare_dead, "declare_dead", silo)) == 1

    async def read(self) -> MembershipView:
        # One script run: the three reads happen at one instant, in one round trip (MULTI
        # with TIME does on one server, but Redis Cluster routes MULTI by key, TIME has
        # none, and redis-py's cluster MULTI costs a thread per queued command).
        flat, version, (seconds, micros) = await self._script(self._read, "read")
        records = dict(zip(flat[::2], flat[1::2], strict=True))
        members = sorted(
            (_member(_text(silo), raw) for silo, raw in records.items()), key=lambda m: m.silo
        )
        return MembershipView(int(version or 0), tuple(members), int(seconds) + int(micros) / _US)

    async def version(self) -> int:
        value = await self._bounded(self._redis.get(self._keys.version), "version")
        return int(value or 0)

    async def agree(self, name: str, value: str) -> str:
        # A script, not MULTI/EXEC: atomic on every topology (see ``read``).
        run = self._agree(keys=[self._keys.config], args=[name, value])
        return _text(await self._bounded(run, "agree"))

    async def forget(self, silos: Iterable[str]) -> None:
        names: Sequence[str] = sorted(set(silos))
        if names:
            await self._script(self._forget, "forget", *names)
