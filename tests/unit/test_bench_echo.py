"""The benchmark's durable echo (its ceiling): requests made durable through bayou's own
GroupCommitter, one Redis append each, against a real redis-server."""

from __future__ import annotations

import asyncio
from typing import cast

from bayou.storage.contract import Commit, Storage
from bayou.storage.group_commit import GroupCommitter
from bench.echo import _Appender
from tests.redis_server import RedisServer


async def test_the_durable_echo_appends_every_request_through_the_group_committer(
    redis_server: RedisServer,
) -> None:
    appender = _Appender(redis_server.url)
    committer = GroupCommitter(cast(Storage, appender))
    keys = [f"bench:echo-test:{i}" for i in range(20)]
    try:
        await asyncio.gather(*(committer.submit(cast(Commit, (key, b"record"))) for key in keys))
        assert committer.batches_flushed == 1 and committer.commits_flushed == 20
        lengths = [await appender.client.xlen(key) for key in keys]
        assert lengths == [1] * 20
    finally:
        await committer.close()
        await appender.client.delete(*keys)
        await appender.client.aclose()
