"""The client must stay importable without the silo runtime or the storage backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_client_imports_neither_runtime_nor_storage() -> None:
    probe = (
        "import json, sys\n"
        "import bayou.client\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bayou'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "bayou.client" in loaded
    leaked = [
        m
        for m in loaded
        if m in ("bayou.runtime", "bayou.storage")
        or m.startswith(("bayou.runtime.", "bayou.storage."))
    ]
    assert leaked == []
