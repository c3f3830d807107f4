"""The benchmark harness's smallest configuration, end to end: it must keep producing a
well-formed report. Speed is never asserted here (the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_mode_writes_a_well_formed_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "latest-smoke.json").read_text())
    assert report["mode"] == "smoke" and report["failed"] == {}
    assert {"cpu", "cores"} <= set(report["machine"])
    assert report["versions"]["python"]
    for name in ("http", "link"):
        for level in ("c1", "c8"):
            row = report["results"]["ceilings"][name][level]
            assert row["ops"] > 0 and row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    call = report["results"]["call"]
    for run in ("bayou-link c8", "bayou-http c8", "raw-http c1"):
        assert call[run]["ops"] > 0 and call[run]["errors"] == 0
        assert call[run]["ratio"] is not None
    [stream] = report["results"]["streams"]["rows"]
    assert stream["written"] > 0 and stream["complete_in_order"]
    assert stream["written_to_seen"]["p50_ms"] <= stream["written_to_seen"]["max_ms"]
    reminders = report["results"]["reminders"]
    assert reminders["registered"] > 0 and reminders["bytes_per_reminder"] > 0
    assert [row["due"]["found"] for row in reminders["polls"]] == [reminders["due"]] * len(
        reminders["polls"]
    )
    markdown = (tmp_path / "latest-smoke.md").read_text()
    assert "## Ceilings" in markdown and "| bayou-link c8 |" in markdown
    assert "## streams" in markdown and "## reminders" in markdown
