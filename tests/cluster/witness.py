"""An independent check of single activation, outside the runtime's own fencing.

Inside every turn the ``witness`` actor takes a Redis lock of its own (SET NX with its
activation's id) and releases it at the end. If the lock is already held by another
activation, two activations of the same actor are running turns at once: the turn bumps a
violation counter in Redis and fails loudly. The lock has a TTL so a silo killed mid-turn
does not leave it behind forever; the TTL is shorter than the membership lease, so it runs
out before a crashed silo's actors can be activated elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from bayou import Actor, Unavailable, actor, query
from samples.counter import CounterState

LOCK_TTL_MS = 1500
_client: redis.Redis | None = None


def witness_redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            os.environ["BAYOU_WITNESS_REDIS"],
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_timeout=True,
        )
    return _client


def lock_key(key: str) -> str:
    return f"witness:lock:{key}"


VIOLATIONS = "witness:violations"
CONFLICTS = "witness:conflicts"  # one JSON object per violation: key, holder, taker, at
# Turns that found the lock held by their own activation: an earlier release that failed, or
# a SET that landed but whose reply was lost and whose retry then found it taken. Turns of
# one activation never overlap (the turn-based guarantee, tested on its own), so these are
# counted apart, not as violations.
STALE_OWN = "witness:stale_own"


def _text(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) else None if value is None else str(value)


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DoubleActivation(RuntimeError):
    pass


@actor("witness")
class Witness(Actor[CounterState]):
    """A counter whose every turn proves it is the only activation running one."""

    activation_id: str = ""

    async def on_activate(self) -> None:
        self.activation_id = uuid.uuid4().hex

    async def add(self, n: int) -> int:
        if self.ctx.replaying:  # the lock guards live turns, not the rebuilding of state
            self.state.value += n
            return self.state.value
        client = witness_redis()
        lock = lock_key(self.key)
        try:
            taken = await client.set(lock, self.activation_id, nx=True, px=LOCK_TTL_MS)
            if not taken:
                holder = _text(await client.get(lock))
                if holder == self.activation_id:
                    await client.set(lock, self.activation_id, px=LOCK_TTL_MS)
                    await client.incr(STALE_OWN)
                # Between the refused SET and the GET the holder's lock may have lapsed: only
                # a second refusal means another activation holds it now.
                elif not await client.set(lock, self.activation_id, nx=True, px=LOCK_TTL_MS):
                    await client.incr(VIOLATIONS)
                    seen = {"key": self.key, "holder": holder, "taker": self.activation_id}
                    await client.rpush(CONFLICTS, json.dumps(seen | {"at": time.time()}))
                    raise DoubleActivation(f"{self.key}: lock held by activation {holder!r}")
        except RedisError as exc:
            # The witness itself is unreachable: a retryable failure, so nothing is recorded
            # and the caller tries again, rather than a terminal error for this key.
            raise Unavailable(f"witness lock unavailable: {exc}") from None
        try:
            await asyncio.sleep(0.002)  # widen the window in which an overlap would show
            self.state.value += n
            return self.state.value
        finally:
            with contextlib.suppress(RedisError):  # the lock's TTL ends it anyway
                await client.eval(_RELEASE, 1, lock, self.activation_id)

    @query
    async def get(self) -> int:
        return self.state.value
