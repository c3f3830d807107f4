"""The chaos suite's network: proxies that pause, reset and isolate one process."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from tests.chaos.proxy import ProxyControl, socket_inode, socket_inodes_of


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


@pytest.fixture
async def proxies() -> AsyncIterator[ProxyControl]:
    control = ProxyControl()
    await control.start()
    try:
        yield control
    finally:
        await control.close()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def roundtrip(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes, timeout: float = 2.0
) -> bytes:
    reader, writer = conn
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


async def silent(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes) -> bool:
    """True if nothing comes back for a while (the bytes are held, not lost)."""
    reader, writer = conn
    writer.write(data)
    await writer.drain()
    try:
        await asyncio.wait_for(reader.read(1), 0.4)
    except TimeoutError:
        return True
    return False


async def test_pause_holds_bytes_until_the_heal(proxies: ProxyControl, echo_port: int) -> None:
    port = await proxies.add("p", [("127.0.0.1", echo_port)])
    conn = await connect(port)
    assert await roundtrip(conn, b"one") == b"one"
    await proxies.cut("p", "pause")
    assert await silent(conn, b"two")
    late = await connect(port)  # accepted, but nothing flows until the heal
    assert await silent(late, b"three")
    await proxies.heal("p")
    assert await asyncio.wait_for(conn[0].readexactly(3), 2) == b"two"
    assert await asyncio.wait_for(late[0].readexactly(5), 2) == b"three"
    for _, writer in (conn, late):
        writer.close()


async def test_reset_aborts_every_connection(proxies: ProxyControl, echo_port: int) -> None:
    port = await proxies.add("p", [("127.0.0.1", echo_port)])
    conn = await connect(port)
    assert await roundtrip(conn, b"one") == b"one"
    await proxies.cut("p", "reset")
    assert await asyncio.wait_for(conn[0].read(10), 2) == b""
    late = await connect(port)
    assert await asyncio.wait_for(late[0].read(10), 2) == b""
    await proxies.heal("p")
    again = await connect(port)
    assert await roundtrip(again, b"back") == b"back"
    for _, writer in (conn, late, again):
        writer.close()


async def test_the_peer_process_of_a_connection_is_found(
    proxies: ProxyControl, echo_port: int
) -> None:
    _, writer = await connect(echo_port)
    local = writer.get_extra_info("sockname")
    inode = socket_inode((local[0], local[1]), ("127.0.0.1", echo_port))
    assert inode is not None
    assert inode in socket_inodes_of(os.getpid())
    assert proxies.proc is not None
    assert inode not in socket_inodes_of(proxies.proc.pid)
    writer.close()


async def test_isolate_cuts_only_the_connections_of_one_process(
    proxies: ProxyControl, echo_port: int
) -> None:
    port = await proxies.add("p", [("127.0.0.1", echo_port)])
    conn = await connect(port)
    assert await roundtrip(conn, b"one") == b"one"
    assert proxies.proc is not None
    await proxies.isolate(proxies.proc.pid, "pause")  # another process: not us
    assert await roundtrip(conn, b"two") == b"two"
    await proxies.unisolate(proxies.proc.pid)
    assert await proxies.isolate(os.getpid(), "pause") == 1
    assert await silent(conn, b"three")
    late = await connect(port)  # opened while isolated: held as well
    assert await silent(late, b"four")
    await proxies.unisolate(os.getpid())
    assert await asyncio.wait_for(conn[0].readexactly(5), 2) == b"three"
    assert await asyncio.wait_for(late[0].readexactly(4), 2) == b"four"
    for _, writer in (conn, late):
        writer.close()


async def test_a_front_door_spreads_over_its_targets_and_skips_dead_ones(
    proxies: ProxyControl,
) -> None:
    served: list[str] = []

    def named(name: str) -> object:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            served.append(name)
            writer.write(name.encode())
            await writer.drain()
            writer.close()

        return handle

    a = await asyncio.start_server(named("a"), "127.0.0.1", 0)  # type: ignore[arg-type]
    b = await asyncio.start_server(named("b"), "127.0.0.1", 0)  # type: ignore[arg-type]
    ports = [int(s.sockets[0].getsockname()[1]) for s in (a, b)]
    dead = await proxies.add("dead", [])  # a listening port that forwards nowhere
    await proxies.remove("dead")
    front = await proxies.add("front", [("127.0.0.1", p) for p in [*ports, dead]])
    for _ in range(6):
        reader, writer = await connect(front)
        assert await asyncio.wait_for(reader.read(1), 2) in (b"a", b"b")
        writer.close()
    assert set(served) == {"a", "b"}
    await proxies.set_targets("front", [("127.0.0.1", ports[1])])
    served.clear()
    for _ in range(3):
        reader, writer = await connect(front)
        assert await asyncio.wait_for(reader.read(1), 2) == b"b"
        writer.close()
    a.close()
    b.close()


async def test_isolating_one_process_does_not_stall_the_others(
    proxies: ProxyControl, echo_port: int
) -> None:
    """The helper forwards every connection of a chaos cluster: isolating one silo must not
    stop it forwarding the others' bytes while it sorts hundreds of links out. It read the
    whole socket table once per link, which took seconds under a chaos run's load: every
    silo lost Redis, not just the one cut off."""
    port = await proxies.add("p", [("127.0.0.1", echo_port)])
    conns = [await connect(port) for _ in range(300)]
    for conn in conns[:5]:
        assert await roundtrip(conn, b"warm") == b"warm"
    assert proxies.proc is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await proxies.isolate(proxies.proc.pid, "pause") == 0  # none of them its own
    assert loop.time() - started < 0.5
    await proxies.unisolate(proxies.proc.pid)
    for _, writer in conns:
        writer.close()
