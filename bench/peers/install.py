"""The peers' own installations, under ``~/.cache/bayou-bench-peers`` (or
``$BAYOU_PEERS_CACHE``), never in bayou's virtualenv and never global:

- ``ray/``: a virtualenv with ``ray`` (the core: no dashboard, which the benchmark does not
  start anyway);
- ``restate/``: a virtualenv with ``restate-sdk``, ``hypercorn`` (the ASGI server the SDK's
  docs serve it with) and ``uvloop`` (hypercorn's uvloop worker, the loop bayou's silos
  run on);
- ``restate-server/``: ``npm install --prefix`` of ``@restatedev/restate-server``, whose
  platform package ships the server binary (install scripts off: the only one is a
  telemetry ping).

Versions are pinned so that runs on different days compare; a stamp file in each directory
records what was installed, and an install is redone only when the pins change.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("BAYOU_PEERS_CACHE", Path.home() / ".cache" / "bayou-bench-peers"))

RAY = ("ray==2.60.0",)
RESTATE_PYTHON = ("restate-sdk==1.3.0", "hypercorn==0.18.0", "uvloop==0.23.0")
RESTATE_SERVER = "@restatedev/restate-server@1.7.12"
STAMP = ".bayou-bench-installed"
INSTALL_TIMEOUT = 900.0


class InstallError(Exception):
    """A peer could not be installed here; the message says what failed, with its output."""


@dataclass(frozen=True)
class Installed:
    python: Path | None = None  # the peer virtualenv's interpreter
    server: Path | None = None  # Restate's server binary


def _run(command: list[str], what: str, log: Path) -> None:
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise InstallError(f"{what}: still running after {INSTALL_TIMEOUT:.0f}s") from None
        except OSError as exc:
            raise InstallError(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise InstallError(f"{what} failed (exit {done.returncode}); {log}:\n{tail}")


def _stamped(directory: Path, pins: object) -> bool:
    try:
        return bool(json.loads((directory / STAMP).read_text()) == pins)
    except (OSError, ValueError):
        return False


def venv(name: str, requirements: tuple[str, ...]) -> Installed:
    """The virtualenv ``name`` with ``requirements``, made (or redone) when needed."""
    directory = CACHE / name
    python = directory / "bin" / "python"
    if _stamped(directory, list(requirements)) and python.exists():
        return Installed(python=python)
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / f"{name}-install.log"
    log.write_text("")
    shutil.rmtree(directory, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(directory)], f"python -m venv {directory}", log)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    _run([*pip, "--upgrade", "pip"], f"{name}: pip install --upgrade pip", log)
    _run([*pip, *requirements], f"{name}: pip install {' '.join(requirements)}", log)
    (directory / STAMP).write_text(json.dumps(list(requirements)))
    return Installed(python=python)


def restate_server() -> Installed:
    """``@restatedev/restate-server`` from npm into the cache; its binary."""
    directory = CACHE / "restate-server"
    found = _server_binary(directory)
    if _stamped(directory, RESTATE_SERVER) and found is not None:
        return Installed(server=found)
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm is not installed (apt-get install npm), so no restate-server")
    directory.mkdir(parents=True, exist_ok=True)
    log = CACHE / "restate-server-install.log"
    log.write_text("")
    command = [npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund"]
    _run([*command, "--ignore-scripts", RESTATE_SERVER], f"npm install {RESTATE_SERVER}", log)
    found = _server_binary(directory)
    if found is None:
        raise InstallError(
            f"npm installed {RESTATE_SERVER} but no server binary for this platform "
            f"({sys.platform}, {os.uname().machine}) under {directory}/node_modules/@restatedev"
        )
    (directory / STAMP).write_text(json.dumps(RESTATE_SERVER))
    return Installed(server=found)


def _server_binary(directory: Path) -> Path | None:
    """The platform package's binary, run directly (the npm wrapper is a node process
    that would stand between the harness and the server it must stop by pid)."""
    pattern = str(directory / "node_modules" / "@restatedev" / "restate-server-*" / "bin")
    for bin_dir in sorted(glob.glob(pattern)):
        binary = Path(bin_dir) / "restate-server"
        if binary.exists() and os.access(binary, os.X_OK):
            return binary
    return None


def ray() -> Installed:
    return venv("ray", RAY)


def restate() -> Installed:
    python = venv("restate", RESTATE_PYTHON).python
    return Installed(python=python, server=restate_server().server)


def package_versions(python: Path, names: tuple[str, ...]) -> dict[str, str | None]:
    """``importlib.metadata`` versions of ``names`` in the virtualenv of ``python``."""
    code = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [str(python), "-c", code, *names], capture_output=True, text=True, timeout=60
    )
    try:
        found: dict[str, str | None] = json.loads(done.stdout)
    except ValueError:
        return dict.fromkeys(names)
    return found
