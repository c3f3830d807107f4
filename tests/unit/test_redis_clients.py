"""The Redis URL forms and the clients built from them (no sockets: nothing connects)."""

from __future__ import annotations

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, SSLConnection

from bayou.placement.redis_membership import RedisMembership
from bayou.storage import RedisStorage, open_storage
from bayou.storage import factory as storage_factory
from bayou.storage.redis import MAX_CONNECTIONS, SOCKET_TIMEOUT, make_client
from bayou.storage.redis_clients import SCHEMES, RedisTarget, is_cluster, parse_url


def test_single_server_urls_pass_through_without_bayous_parameters() -> None:
    target = parse_url(
        "redis://u:p@h:1/2?wait_replicas=1&wait_timeout_ms=250&health_check_interval=3"
    )
    assert target == RedisTarget(
        "single",
        False,
        wait_replicas=1,
        wait_timeout_ms=250,
        single_url="redis://u:p@h:1/2?health_check_interval=3",
    )
    assert parse_url("rediss://h").tls


def test_cluster_urls_list_startup_nodes() -> None:
    target = parse_url("redis+cluster://us%40r:p%3Ass@a:7000,b,[::1]:7002/")
    assert target.topology == "cluster" and not target.tls
    assert target.nodes == (("a", 7000), ("b", 6379), ("::1", 7002))
    assert (target.username, target.password) == ("us@r", "p:ss")
    assert parse_url("rediss+cluster://a:1?ssl_cert_reqs=none").options == {"ssl_cert_reqs": "none"}
    assert parse_url("redis+cluster://a:1/0").db == 0
    for bad, message in [
        ("redis+cluster://a:1/3", "db 0 only"),
        ("redis+cluster://a:x", "bad port"),
        ("redis+cluster://a:1,,b:2", "empty host"),
        ("redis+cluster://a:1?wait_replicas=1", "not supported on Redis Cluster"),
        ("redis+cluster://a:1?socket_timeout=1", "unknown parameter"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_url(bad)


def test_sentinel_urls_name_the_service_and_db() -> None:
    target = parse_url(
        "redis+sentinel://:pw@s1,s2:26380/mymaster/3?wait_replicas=2&sentinel_password=sp"
    )
    assert target.topology == "sentinel"
    assert target.nodes == (("s1", 26379), ("s2", 26380))
    assert (target.service, target.db, target.password) == ("mymaster", 3, "pw")
    assert target.username is None and target.sentinel_password == "sp"
    assert target.wait_replicas == 2
    assert parse_url("rediss+sentinel://s/m").tls
    for bad, message in [
        ("redis+sentinel://s1:26379", "must name the service"),
        ("redis+sentinel://s1/m/1/2", "must name the service"),
        ("redis+sentinel://s1/m?wait_replicas=-1", "negative"),
        ("redis+sentinel://s1/m?wait_timeout_ms=0", "positive"),
        ("redis+sentinel://s1/m?wait_replicas=one", "not an integer"),
        ("redis+sentinel://:secret@s1:x/m", "bad port"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            parse_url(bad)
        assert "secret" not in str(info.value)


def test_unknown_schemes_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="redis\\+cluster://"):
        parse_url("valkey://h:1")


def test_the_factory_knows_every_scheme() -> None:
    assert {s.removesuffix("://") for s in storage_factory._REDIS_SCHEMES} == set(SCHEMES)
    for url in ("redis+cluster://a:1/", "redis+sentinel://a:1/m"):
        assert isinstance(open_storage(url, "c"), RedisStorage)


async def test_storage_clients_keep_their_guarantees_on_every_topology() -> None:
    single = make_client("redis://127.0.0.1:1/0")
    assert isinstance(single.connection_pool, BlockingConnectionPool)
    assert single.connection_pool.max_connections == MAX_CONNECTIONS

    sentinel = make_client("redis+sentinel://127.0.0.1:1/svc/2")
    pool = sentinel.connection_pool
    assert isinstance(pool, BlockingConnectionPool)  # waits for a connection, as single does
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["socket_timeout"] == SOCKET_TIMEOUT
    assert pool.connection_class.__name__.startswith("HiredisPacking")
    assert not is_cluster(sentinel)

    cluster = make_client("rediss+cluster://127.0.0.1:1,127.0.0.1:2/")
    assert isinstance(cluster, RedisCluster) and is_cluster(cluster)
    kwargs = cluster.get_connection_kwargs()
    assert kwargs["decode_responses"] is False
    assert kwargs["socket_timeout"] == SOCKET_TIMEOUT
    assert issubclass(kwargs["connection_class"], SSLConnection)
    assert kwargs["connection_class"].__name__ == "HiredisPackingSSLConnection"
    assert [n.connection_class for n in cluster.startup_nodes] == [kwargs["connection_class"]] * 2
    for client in (single, sentinel, cluster):
        await client.aclose()


async def test_membership_builds_its_client_from_the_same_urls() -> None:
    for url, kind in [
        ("redis://127.0.0.1:1/0", redis.asyncio.Redis),
        ("redis+sentinel://127.0.0.1:1/svc", redis.asyncio.Redis),
        ("redis+cluster://127.0.0.1:1/", RedisCluster),
    ]:
        membership = RedisMembership(url, "c")
        assert isinstance(membership._redis, kind)
        await membership.close()
