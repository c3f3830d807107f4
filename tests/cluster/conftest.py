from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.harness import SiloProcess


@pytest.fixture
async def silo(tmp_path: Path) -> AsyncIterator[SiloProcess]:
    """A started silo process on the embedded store, killed at the end of the test."""
    proc = SiloProcess(tmp_path / "silo.db")
    await proc.start()
    try:
        yield proc
    finally:
        await proc.kill()
