"""``python -m bench [--quick|--smoke] [--only call,query] [--out DIR]``: run the scenarios
of a mode within its time budget and write the report."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import goals, report
from bench.config import MODES, Mode
from bench.context import Bench, SkipScenario
from bench.procs import ROOT
from bench.progress import Progress
from bench.scenarios import (
    activate,
    calls,
    ceilings,
    memory,
    recover,
    reminders,
    replay,
    scale,
    streams,
)

Scenario = Callable[[Bench], dict[str, Any]]

SCENARIOS: dict[str, Scenario] = {
    "ceilings": ceilings.run,
    "call": calls.run_call,
    "query": calls.run_query,
    "tell": calls.run_tell,
    "activate": activate.run,
    "replay": replay.run,
    "streams": streams.run,
    "reminders": reminders.run,
    "recover": recover.run,
    "scale": scale.run,
    "memory": memory.run,
}


def planned_steps(mode: Mode, names: Sequence[str]) -> int:
    """Progress-bar steps: one per measurement each scenario makes."""
    steps = {
        "ceilings": 4 + (2 if mode.redis else 0) + (1 if mode.redis_benchmark_requests else 0),
        "call": 7,
        "query": 4,
        "tell": 3,
        "activate": 2,
        "replay": 2,
        "streams": len(mode.stream_runs),
        "reminders": 1 + (1 if mode.reminders_fire else 0),
        "memory": len(mode.memory),
        "recover": 2,
        "scale": 1,
    }
    return sum(steps[name] for name in names)


def run(mode: Mode, names: Sequence[str], out_dir: Path, keep: bool = False) -> dict[str, Any]:
    """Run ``names`` in ``mode``; the report (also written to ``out_dir``)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bayou-bench-{mode.name}-"))
    progress = Progress(planned_steps(mode, names))
    bench = Bench(mode, workdir, progress)
    skipped: list[str] = []
    failed: dict[str, str] = {}
    try:
        for name in names:
            if bench.time_left() <= 0:
                skipped.append(f"{name}: the {mode.budget:.0f}s budget was spent")
                continue
            progress.start(name)
            try:
                bench.results[name] = SCENARIOS[name](bench)
            except SkipScenario as exc:
                skipped.append(str(exc))
            except Exception as exc:  # one broken scenario must not lose the others' figures
                failed[name] = f"{type(exc).__name__}: {exc}"
                bench.note(f"{name} failed: {type(exc).__name__}: {str(exc)[:500]}")
                traceback.print_exc(file=sys.stderr)
    finally:
        bench.procs.close()
        progress.finish()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "mode": mode.name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(bench.elapsed(), 1),
        "runs": mode.runs,
        "machine": report.machine(),
        "versions": report.versions(),
        "settings": {
            "actors": mode.actors,
            "high_concurrency": mode.high,
            "duration_s": mode.duration,
            "storage": "redis (AOF everysec)" if mode.redis else "memory",
        },
        "goals": goals.evaluate(bench.results, mode.high) if mode.name != "smoke" else [],
        "results": bench.results,
        "failed": failed,
        "skipped": skipped,
        "notes": bench.notes,
    }
    json_path, md_path = report.write(result, out_dir)
    print(f"report: {md_path.relative_to(ROOT) if md_path.is_relative_to(ROOT) else md_path}")
    print(f"        {json_path.name}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--quick",
        action="store_true",
        help="every scenario but streams and reminders, in under 2 minutes",
    )
    group.add_argument("--smoke", action="store_true", help="seconds: the CI check")
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args(argv)
    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    names = list(mode.scenarios)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in SCENARIOS]
        if unknown:
            parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
        names = [n for n in SCENARIOS if n in wanted]
    started = time.monotonic()
    result = run(mode, names, args.out, keep=args.keep)
    print(
        f"done in {time.monotonic() - started:.0f}s; failed: {sorted(result['failed']) or 'none'}"
    )
    return 1 if result["failed"] else 0
