"""Redis clients built from URLs: one server, Redis Cluster, or a Sentinel-managed primary.

Storage (``bayou.storage.redis``) and membership (``bayou.placement.redis_membership``)
both build their clients here, so every topology gets the same guarantees: bytes replies,
socket and connect timeouts, bounded retries, health checks, and (for storage) hiredis
packing and callers that wait for a free connection instead of failing. URL forms::

    redis://[user:pass@]host[:port][/db]                one server (``rediss://``: TLS)
    redis+cluster://[user:pass@]host[:port][,host[:port]...][/]
                                                        Redis Cluster; the nodes listed
                                                        are only where discovery starts
                                                        (``rediss+cluster://``: TLS)
    redis+sentinel://[user:pass@]host[:port][,host[:port]...]/service[/db]
                                                        the primary that the Sentinels
                                                        name ``service``, followed through
                                                        failovers (``rediss+sentinel://``:
                                                        TLS to Sentinels and primary)

``user:pass`` authenticates to the data nodes. Query parameters bayou reads (and removes
before anything reaches redis-py): ``wait_replicas=N`` and ``wait_timeout_ms=MS`` (storage
only: every group commit and stored tell is followed by ``WAIT N MS`` on its connection,
and is acknowledged only if N replicas confirmed it; one server or Sentinel only), and, for
Sentinel, ``sentinel_username``/``sentinel_password`` when the Sentinels themselves ask for
a password. Default ports: 6379 for data nodes, 26379 for Sentinels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import AbstractBackoff, ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

Topology = Literal["single", "cluster", "sentinel"]

# Scheme -> (topology, TLS). Single-server URLs go to redis-py's own parser unchanged.
SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
DATA_PORT = 6379
SENTINEL_PORT = 26379
_OWN_PARAMS = ("wait_replicas", "wait_timeout_ms", "sentinel_username", "sentinel_password")
DEFAULT_WAIT_TIMEOUT_MS = 1000
# TLS settings a cluster or Sentinel URL may carry, as redis-py's own URLs do.
_TLS_PARAMS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a URL names: the topology, where to find it, and bayou's own options."""

    topology: Topology
    tls: bool
    nodes: tuple[tuple[str, int], ...] = ()  # cluster startup nodes, or Sentinels
    service: str = ""  # Sentinel: the monitored primary's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    wait_replicas: int = 0
    wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS
    single_url: str = ""  # single: the URL for redis-py, bayou's parameters removed
    options: dict[str, Any] = field(default_factory=dict)  # TLS settings from the query


def parse_url(url: str) -> RedisTarget:
    """The target ``url`` names; ValueError (naming what is wrong) on anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"unsupported redis url scheme {parts.scheme!r}: use one of {known}")
    topology, tls = SCHEMES[scheme]
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    own = {name: query.pop(name) for name in _OWN_PARAMS if name in query}
    if topology != "single":
        unknown = sorted(set(query) - set(_TLS_PARAMS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} in {_redacted(url)!r}")
    wait_replicas = _int_param(own, "wait_replicas", 0)
    wait_timeout_ms = _int_param(own, "wait_timeout_ms", DEFAULT_WAIT_TIMEOUT_MS)
    if wait_timeout_ms <= 0:
        raise ValueError("wait_timeout_ms must be positive (WAIT 0 would wait for ever)")
    if wait_replicas and topology == "cluster":
        raise ValueError("wait_replicas is not supported on Redis Cluster yet")
    common: dict[str, Any] = {
        "topology": topology,
        "tls": tls,
        "wait_replicas": wait_replicas,
        "wait_timeout_ms": wait_timeout_ms,
    }
    if topology == "single":
        single = urlunsplit(parts._replace(query=urlencode(query)))
        return RedisTarget(single_url=single, **common)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    default_port = DATA_PORT if topology == "cluster" else SENTINEL_PORT
    nodes = tuple(_host_port(item, default_port, url) for item in hosts.split(","))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if topology == "cluster":
        if path and path != ["0"]:
            raise ValueError(f"redis cluster url {_redacted(url)!r}: Redis Cluster has db 0 only")
        return RedisTarget(
            nodes=nodes,
            username=username,
            password=password,
            options=_tls_options(query),
            **common,
        )
    if not path or len(path) > 2:
        raise ValueError(
            f"sentinel url {_redacted(url)!r} must name the service: "
            "redis+sentinel://host:26379[,host:26379...]/service[/db]"
        )
    db = int(path[1]) if len(path) == 2 else 0
    return RedisTarget(
        nodes=nodes,
        service=path[0],
        db=db,
        username=username,
        password=password,
        sentinel_username=own.get("sentinel_username"),
        sentinel_password=own.get("sentinel_password"),
        options=_tls_options(query),
        **common,
    )


def _tls_options(query: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = dict(query)
    if "ssl_check_hostname" in options:
        flag = options["ssl_check_hostname"].lower()
        options["ssl_check_hostname"] = flag in ("1", "true", "yes")
    return options


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < 0:
        raise ValueError(f"{name}={value} is negative")
    return value


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None, unquote(password) if colon else None)


def _host_port(item: str, default_port: int, url: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"redis url {_redacted(url)!r} has an empty host")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"redis url {_redacted(url)!r}: bad port {port_text!r}") from None
    return host, port


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# -- what a client promises -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientProfile:
    """The connection settings one user of Redis (storage, membership) wants, whatever
    the topology. ``blocking``: a caller beyond ``max_connections`` waits for a free
    connection (bounded by its own deadline) rather than failing."""

    client_name: str
    socket_timeout: float
    connect_timeout: float
    retries: int
    backoff_base: float
    backoff_cap: float
    retry_on_timeout: bool
    max_connections: int
    blocking: bool
    health_check_interval: float
    hiredis_packing: bool

    def backoff(self) -> AbstractBackoff:
        if self.backoff_base <= 0:
            return NoBackoff()
        return ExponentialBackoff(cap=self.backoff_cap, base=self.backoff_base)

    def retry(self) -> Retry:
        errors: tuple[type[RedisError], ...] = (RedisConnectionError,)
        if self.retry_on_timeout:
            errors += (RedisTimeoutError,)
        return Retry(self.backoff(), self.retries, supported_errors=errors)


def make_client(url: str, profile: ClientProfile) -> redis.asyncio.Redis:
    """A client for ``url`` with ``profile``'s settings: a ``redis.asyncio.Redis`` for one
    server or a Sentinel-managed primary, a ``RedisCluster`` for Redis Cluster (typed as
    ``Redis`` here: both answer the same commands; callers that must tell them apart ask
    ``is_cluster``)."""
    target = parse_url(url)
    if target.topology == "cluster":
        cluster: Any = _cluster_client(target, profile)
        return cluster  # type: ignore[no-any-return]
    if target.topology == "sentinel":
        return _sentinel_client(target, profile)
    return _single_client(target, profile)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def decodes_responses(client: object) -> bool:
    """Whether ``client`` turns replies into ``str`` (bayou's stores need bytes)."""
    get = getattr(client, "get_connection_kwargs", None)
    return bool(get is not None and get().get("decode_responses"))


def _connection_kwargs(profile: ClientProfile) -> dict[str, Any]:
    return {
        "decode_responses": False,
        "socket_timeout": profile.socket_timeout,
        "socket_connect_timeout": profile.connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": profile.health_check_interval,
        "client_name": profile.client_name,
    }


def _single_client(target: RedisTarget, profile: ClientProfile) -> redis.asyncio.Redis:
    kwargs = _connection_kwargs(profile)
    kwargs["retry"] = profile.retry()
    pool_class = BlockingConnectionPool if profile.blocking else redis.asyncio.ConnectionPool
    if profile.blocking:
        kwargs["timeout"] = None  # the wait is bounded by the caller's own deadline
    pool = pool_class.from_url(target.single_url, max_connections=profile.max_connections, **kwargs)
    if profile.hiredis_packing:
        pack_with_hiredis(pool)
    return redis.asyncio.Redis.from_pool(pool)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel pool whose callers wait for a free connection (``BlockingConnectionPool``)
    instead of failing with "Too many connections"; it still asks the Sentinels where the
    primary is on every new connection."""


class _SentinelRedis(redis.asyncio.Redis):
    """The primary's client; closing it also closes the connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pool = self.connection_pool
        await super().aclose(close_connection_pool)
        manager = getattr(pool, "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            await manager.aclose()


def _sentinel_client(target: RedisTarget, profile: ClientProfile) -> redis.asyncio.Redis:
    # Sentinel queries are small and answered at once: the profile's timeouts, no retries
    # of their own (each new data connection asks them again).
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": profile.socket_timeout,
        "socket_connect_timeout": profile.connect_timeout,
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        "ssl": target.tls,
        "decode_responses": False,
    }
    if target.tls:
        sentinel_kwargs.update(target.options)
    nodes = list(target.nodes)
    sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    kwargs = _connection_kwargs(profile)
    kwargs.update(
        retry=profile.retry(),
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        max_connections=profile.max_connections,
        **target.options,
    )
    pool_class: type[SentinelConnectionPool] = SentinelConnectionPool
    if profile.blocking:
        pool_class = _BlockingSentinelPool
        kwargs["timeout"] = None  # the wait is bounded by the caller's own deadline
    client: redis.asyncio.Redis = sentinel.master_for(
        target.service, redis_class=_SentinelRedis, connection_pool_class=pool_class, **kwargs
    )
    if profile.hiredis_packing:
        pack_with_hiredis(client.connection_pool)
    return client


def _cluster_client(target: RedisTarget, profile: ClientProfile) -> RedisCluster:
    kwargs = _connection_kwargs(profile)
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        # Redis Cluster's client retries a failed command itself (re-reading the slot map
        # between attempts); only the count of this Retry is used.
        retry=Retry(profile.backoff(), profile.retries),
        # Twice what callers may use at once (RedisStorage's gate): a connection being
        # reset after an error still counts against a node's limit for a moment, and a
        # node past it fails the command (MaxConnectionsError) rather than waiting.
        max_connections=2 * profile.max_connections,
        # Keep serving the slots that are covered while a shard is down or failing over;
        # the server answers CLUSTERDOWN for the others, which fails those calls alone.
        require_full_coverage=False,
        **kwargs,
        **target.options,
    )
    if profile.hiredis_packing:
        packing = _hiredis_class(client.connection_kwargs["connection_class"])
        if packing is not None:
            # Nodes found later are built from these kwargs; the startup nodes already
            # took a copy of them.
            client.connection_kwargs["connection_class"] = packing
            for node in client.startup_nodes:
                node.connection_class = packing
    return client


# -- hiredis packing ------------------------------------------------------------------------


def pack_with_hiredis(pool: redis.asyncio.ConnectionPool) -> None:
    """Have the pool's connections pack commands with hiredis (C), as redis-py's sync
    client does. Its asyncio connections pack in Python, copying the growing buffer once
    per argument: a group commit of a few hundred turns (thousands of arguments) spent
    more time being packed than being run. Without hiredis the pool is left as it is."""
    packing = _hiredis_class(pool.connection_class)
    if packing is not None:
        pool.connection_class = packing


_PACKING: dict[type[Any], type[Any]] = {}  # connection class -> its hiredis-packing subclass


def _hiredis_class(base: type[Any]) -> type[Any] | None:
    try:
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:  # pragma: no cover - a redis-py without it: keep its own packing
        return None
    if not HIREDIS_AVAILABLE:
        return None
    if base in _PACKING.values():
        return base
    packing = _PACKING.get(base)
    if packing is None:
        import hiredis
        from redis.connection import HiredisRespSerializer

        serializer = HiredisRespSerializer()

        def pack_command(self: Any, *args: Any) -> list[bytes]:
            # HiredisRespSerializer.pack, less its pass over every argument (a generator
            # that turns bytearray and memoryview into bytes; a group commit has a thousand
            # arguments, all bytes, str or int already): hiredis refuses what it cannot
            # pack, and then the serializer converts and packs, or raises DataError.
            command = args[0]
            if isinstance(command, str):
                args = (*command.encode().split(), *args[1:])
            elif b" " in command:
                args = (*command.split(), *args[1:])
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                packed: list[bytes] = serializer.pack(*args)
                return packed

        name = f"HiredisPacking{base.__name__}"
        packing = _PACKING[base] = type(name, (base,), {"pack_command": pack_command})
    return packing
