"""TCP proxies on loopback that the fault scheduler can break: the chaos suite's network.

Every byte between a silo and Redis, between two silos, and between a client and a silo
crosses one of these proxies, all served by one helper process (``python -m
tests.chaos.proxy``) that the scheduler drives over its stdin/stdout with one JSON command
per line (``ProxyControl`` is that driver). A proxy is broken in one of two ways:

- ``pause``: a black hole, like a partitioned network. Bytes stop flowing both ways on every
  connection and new connections are accepted but not forwarded; nothing is lost, so when
  the proxy heals, TCP-like, whatever the two ends still want to say goes through.
- ``reset``: every connection is aborted (RST) and new ones are aborted at once, like a
  host that is up but refuses the port.

``isolate(pid)`` cuts only the connections that a given process opened, on every proxy: a
silo's links to its peers go to the peers' proxies, so this is how the silo is cut off
from the others without cutting the others from each other. The peer process is found as
Linux shows it: ``/proc/net/tcp`` gives the inode of the connecting socket, and
``/proc/<pid>/fd`` says whether the process holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
Address = tuple[str, int]
MODES = ("pause", "reset")
_CONNECT_TIMEOUT = 1.0
_CHUNK = 1 << 16


# -- which process opened a connection ---------------------------------------------------------


def _hex_address(host: str, port: int) -> str:
    # /proc/net/tcp prints an IPv4 address as the 32-bit integer in host (little-endian) order.
    return f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"


def tcp_inodes() -> dict[tuple[str, str], int]:
    """The inode of every IPv4 TCP socket, by its (local, remote) address as
    ``/proc/net/tcp`` prints them: one read of the table (milliseconds, kernel side)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return {}
    table = {}
    for line in lines:
        cols = line.split()
        if len(cols) > 9:
            table[(cols[1], cols[2])] = int(cols[9])
    return table


def socket_inode(
    local: Address, remote: Address, table: dict[tuple[str, str], int] | None = None
) -> int | None:
    """The inode of the IPv4 TCP socket bound to ``local`` and connected to ``remote``
    (looked up in ``table``, from ``tcp_inodes()``, if given; else the table is read)."""
    if table is None:
        table = tcp_inodes()
    return table.get((_hex_address(*local), _hex_address(*remote)))


def socket_inodes_of(pid: int) -> set[int]:
    """The inodes of every socket process ``pid`` holds open."""
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


# -- the proxies --------------------------------------------------------------------------------


@dataclass(eq=False)
class Link:
    """One accepted connection and, once the gate opens, its upstream."""

    proxy: Proxy
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: Address
    local: Address
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    source_pid: int | None = None
    upstream: asyncio.StreamWriter | None = None

    def abort(self) -> None:
        for writer in (self.writer, self.upstream):
            if writer is not None:
                writer.transport.abort()
        self.gate.set()  # wake the pumps so they notice and end

    async def run(self) -> None:
        try:
            await self.gate.wait()
            if self.writer.transport.is_closing():
                return
            upstream = await self.proxy.connect()
            if upstream is None:
                return
            up_reader, self.upstream = upstream
            await asyncio.gather(
                self._pump(self.reader, self.upstream), self._pump(up_reader, self.writer)
            )
        finally:
            self.proxy.links.discard(self)
            for writer in (self.writer, self.upstream):
                if writer is not None:
                    writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self.gate.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    if writer.can_write_eof() and not writer.transport.is_closing():
                        writer.write_eof()
                    return
                await self.gate.wait()  # cut while reading: hold the bytes until the heal
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, RuntimeError):
            self.abort()


class Proxy:
    """Listens on one address and forwards each connection to the first target that
    accepts it (several targets: a round-robin front door over silos)."""

    def __init__(self, hub: Hub, name: str, targets: list[Address]) -> None:
        self.hub = hub
        self.name = name
        self.targets = targets
        self.mode: str | None = None  # None: healthy, else one of MODES
        self.links: set[Link] = set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._next = itertools.count()
        self.accepted = 0

    async def listen(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for link in list(self.links):
            link.abort()

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        if not self.targets:
            return None
        start = next(self._next)
        for i in range(len(self.targets)):
            host, port = self.targets[(start + i) % len(self.targets)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), _CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                continue
        return None

    def cut_of(self, link: Link) -> str | None:
        """How ``link`` is cut right now (None: not at all)."""
        if self.mode is not None:
            return self.mode
        if link.source_pid is not None:
            return self.hub.isolated.get(link.source_pid)
        return None

    def apply(self, link: Link) -> None:
        cut = self.cut_of(link)
        if cut == "reset":
            link.abort()
        elif cut == "pause":
            link.gate.clear()
        else:
            link.gate.set()

    def apply_all(self) -> None:
        for link in list(self.links):
            self.apply(link)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        link = Link(self, reader, writer, (peer[0], peer[1]), (local[0], local[1]))
        if self.hub.isolated:
            link.source_pid = self.hub.owner_of(link)
        self.links.add(link)
        self.apply(link)
        await link.run()


class Hub:
    """Every proxy of the helper process, and the processes isolated from all of them."""

    def __init__(self) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.isolated: dict[int, str] = {}  # pid -> mode
        self._inodes: dict[int, set[int]] = {}

    def owner_of(self, link: Link) -> int | None:
        inode = socket_inode(link.peer, link.local)
        if inode is None:
            return None
        for pid in self.isolated:
            if inode in socket_inodes_of(pid):
                return pid
        return None

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "add":
            proxy = Proxy(self, command["name"], [tuple(t) for t in command["targets"]])
            port = await proxy.listen(command.get("host", "127.0.0.1"), command.get("port", 0))
            self.proxies[proxy.name] = proxy
            return {"port": port}
        if op == "remove":
            removed = self.proxies.pop(command["name"], None)
            if removed is not None:
                await removed.close()
            return {}
        if op == "targets":
            self.proxies[command["name"]].targets = [tuple(t) for t in command["targets"]]
            return {}
        if op == "cut":
            mode = command["mode"]
            if mode not in MODES:
                raise ValueError(f"mode must be one of {MODES}")
            proxy = self.proxies[command["name"]]
            proxy.mode = mode
            proxy.apply_all()
            return {"links": len(proxy.links)}
        if op == "heal":
            proxy = self.proxies[command["name"]]
            proxy.mode = None
            proxy.apply_all()
            return {}
        if op == "isolate":
            pid, mode = int(command["pid"]), command["mode"]
            if mode not in MODES:
                raise ValueError(f"mode must be one of {MODES}")
            self.isolated[pid] = mode
            inodes = socket_inodes_of(pid)
            # One read of the socket table for every link: this process forwards every
            # connection of the cluster, and reading the table once per link (hundreds of
            # them) stalled it for seconds, cutting *every* silo off from Redis.
            table = tcp_inodes()
            cut = 0
            for proxy in self.proxies.values():
                for link in list(proxy.links):
                    if link.source_pid is None:
                        inode = socket_inode(link.peer, link.local, table)
                        if inode is not None and inode in inodes:
                            link.source_pid = pid
                    if link.source_pid == pid:
                        cut += 1
                        proxy.apply(link)
            return {"links": cut}
        if op == "unisolate":
            pid = int(command["pid"])
            self.isolated.pop(pid, None)
            for proxy in self.proxies.values():
                proxy.apply_all()
            return {}
        if op == "stats":
            return {
                name: {"links": len(p.links), "accepted": p.accepted, "mode": p.mode}
                for name, p in self.proxies.items()
            }
        raise ValueError(f"unknown op {op!r}")


async def serve() -> None:
    """Read commands from stdin, one JSON object a line; answer each on stdout."""
    hub = Hub()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    while line := await reader.readline():
        command = json.loads(line)
        try:
            reply = {"id": command.get("id"), "ok": True, **await hub.handle(command)}
        except Exception as exc:
            reply = {"id": command.get("id"), "ok": False, "error": repr(exc)}
        print(json.dumps(reply), flush=True)
    for proxy in hub.proxies.values():
        await proxy.close()


# -- the driver ---------------------------------------------------------------------------------


class ProxyControl:
    """Starts the proxy helper process and sends it commands; ``close`` ends it."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        root = ROOT
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.chaos.proxy",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=root,
            env=dict(os.environ, PYTHONPATH=str(root)),
        )
        assert self.proc.stdout is not None
        ready = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not ready:
            raise RuntimeError("the proxy helper did not start")

    async def command(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        assert self.proc.stdout is not None
        async with self._lock:
            ident = next(self._ids)
            self.proc.stdin.write(json.dumps({"op": op, "id": ident, **args}).encode() + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"proxy command {op} failed: {reply.get('error')}")
        return reply

    async def add(
        self, name: str, targets: Iterable[Address], *, host: str = "127.0.0.1", port: int = 0
    ) -> int:
        reply = await self.command("add", name=name, targets=list(targets), host=host, port=port)
        return int(reply["port"])

    async def remove(self, name: str) -> None:
        await self.command("remove", name=name)

    async def set_targets(self, name: str, targets: Iterable[Address]) -> None:
        await self.command("targets", name=name, targets=list(targets))

    async def cut(self, name: str, mode: str) -> None:
        await self.command("cut", name=name, mode=mode)

    async def heal(self, name: str) -> None:
        await self.command("heal", name=name)

    async def isolate(self, pid: int, mode: str) -> int:
        return int((await self.command("isolate", pid=pid, mode=mode))["links"])

    async def unisolate(self, pid: int) -> None:
        await self.command("unisolate", pid=pid)

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve())
