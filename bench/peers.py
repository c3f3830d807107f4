"""``make bench-peers``: the same call workload on bayou's peers, when they can run here.

Peers install into virtualenvs of their own under ``~/.cache/bayou-bench-peers`` (never
into bayou's): Ray (non-durable actors) from PyPI, and Restate (virtual objects) as the
npm package ``@restatedev/restate-server`` plus the ``restate-sdk`` Python SDK. This module
finds out what is runnable and writes ``bench/results/peers.json`` and ``.md`` saying, for
each peer, either its figures or why there are none.

Status: the availability check and the report are in place; the peers' load drivers are
not written yet, so every peer is reported as not measured, with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.procs import ROOT
from bench.report import machine, versions

CACHE = Path.home() / ".cache" / "bayou-bench-peers"


def _ray() -> dict[str, Any]:
    python = CACHE / "ray" / "bin" / "python"
    if not python.exists():
        return {
            "measured": False,
            "why": f"no Ray virtualenv at {python.parent.parent} "
            "(python -m venv it, then pip install 'ray[default]'); the Ray call driver "
            "is not written yet",
        }
    return {"measured": False, "why": "the Ray call driver is not written yet"}


def _restate() -> dict[str, Any]:
    server = shutil.which("restate-server")
    npm = shutil.which("npm")
    if server is None:
        how = "npm install -g @restatedev/restate-server" if npm else "npm is not installed"
        return {
            "measured": False,
            "why": f"no restate-server on PATH ({how}); the Restate driver is not written yet",
        }
    return {"measured": False, "why": "the Restate call driver is not written yet"}


def main() -> int:
    peers: dict[str, dict[str, Any]] = {"ray": _ray(), "restate": _restate()}
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "peers": peers,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# bayou peers", "", "| peer | measured | why not |", "|---|---|---|"]
    for name, peer in peers.items():
        lines.append(f"| {name} | {'yes' if peer['measured'] else 'no'} | {peer.get('why', '')} |")
    (out / "peers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
