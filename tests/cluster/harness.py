"""Real silo processes for tests: started with the ``bayou`` CLI, killed by pid."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SiloProcess:
    """One ``bayou silo`` subprocess on a loopback port, with its log in ``log_path``."""

    def __init__(
        self,
        data: Path,
        *,
        app: str = "tests.cluster.apps:app",
        port: int | None = None,
        redis_url: str | None = None,
        cluster: str | None = None,
        env: dict[str, str] | None = None,
        witness_url: str | None = None,
    ) -> None:
        self.data = data
        self.app = app
        self.port = port or free_port()
        self.redis_url = redis_url
        self.cluster = cluster
        self.env = env or {}
        # The witness actor's own Redis (tests/cluster/witness.py): the silos' by default.
        self.witness_url = witness_url or redis_url
        self.log_path = data.with_suffix(f".{self.port}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ, BAYOU_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT), **self.env)
        command = [sys.executable, "-m", "bayou", "silo", "--app", self.app]
        command += ["--port", str(self.port), "--data", str(self.data)]
        if self.redis_url:
            command += ["--redis", self.redis_url, "--cluster", self.cluster or "default"]
        if self.witness_url:
            env["BAYOU_WITNESS_REDIS"] = self.witness_url
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"silo exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    async with session.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"silo not ready after {timeout}s:\n{self.log()}")

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("silo did not exit")
            await asyncio.sleep(0.02)
        return self.proc.returncode

    async def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush, snapshot or release anything."""
        self.signal(signal.SIGKILL)
        await self.wait_exit()

    async def terminate(self) -> int:
        """SIGTERM: the graceful path (drain, snapshot, release)."""
        self.signal(signal.SIGTERM)
        return await self.wait_exit()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""
