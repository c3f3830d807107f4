"""Imports only point down: each layer is imported alone, in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m for m in json.loads(out.stdout) if m.startswith("bayou")}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("bayou", {"bayou.runtime", "bayou.client", "bayou.storage", "bayou.model"}),
        ("bayou.client", {"bayou.runtime", "bayou.storage", "bayou.placement"}),
        ("bayou.storage", {"bayou.runtime", "bayou.placement", "bayou.client", "bayou.model"}),
        ("bayou.placement", {"bayou.runtime", "bayou.client"}),
    ],
)
def test_layers_only_import_downwards(module: str, forbidden: set[str]) -> None:
    loaded = loaded_after(module)
    leaked = {m for m in loaded for f in forbidden if m == f or m.startswith(f + ".")}
    assert not leaked, f"importing {module} loaded {sorted(leaked)}"
