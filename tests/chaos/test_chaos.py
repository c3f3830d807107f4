"""The chaos suite's short run, in every test run: all fault kinds under load, no violation.

``make chaos`` runs the same scenario from the command line; ``make chaos DURATION=600``
the long one. Set ``CHAOS_SEED`` to replay a schedule; the seed is in every failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.nemesis import KINDS
from tests.chaos.run import ci_config, run

pytestmark = pytest.mark.cluster

SEED = int(os.environ.get("CHAOS_SEED", "20261124"))


@pytest.mark.timeout(400)
async def test_a_short_chaos_run_breaks_no_promise(tmp_path: Path) -> None:
    config = ci_config(SEED)
    report = await run(config, tmp_path / "chaos")
    where = f"seed {SEED} (CHAOS_SEED={SEED} replays it); report in {tmp_path / 'chaos'}"
    assert report.checked, f"the final state could not be read; {where}"
    assert report.violations == [], f"{len(report.violations)} violations; {where}"
    crashed = [e for e in report.exits if not e["expected"] and not e["hung"]]
    assert crashed == [], f"silos ended unexpectedly: {crashed}; {where}"
    assert all(report.faults_by_kind[kind] >= 1 for kind in KINDS), report.faults_by_kind
    assert report.witness["turns"] > 1000, report.witness  # the witness did watch
    assert report.operations["all"].get("ok", 0) > 1000, report.operations
