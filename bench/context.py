"""What every scenario shares in one run: the mode, the processes, the load generator,
the results so far, and the clock of the run's time budget."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.config import Mode
from bench.loadgen import LoadSpec
from bench.procs import ROOT, Child, Processes
from bench.progress import Progress
from bench.stats import median_of


class SkipScenario(Exception):
    """A scenario cannot run here (a missing tool, no time left); the reason is reported."""


class Bench:
    def __init__(self, mode: Mode, workdir: Path, progress: Progress) -> None:
        self.mode = mode
        self.workdir = workdir
        self.procs = Processes(workdir / "procs")
        self.progress = progress
        self.started = time.monotonic()
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []
        self._redis: tuple[Child, str] | None = None
        self._main: tuple[Child, str] | None = None

    # -- time ------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def time_left(self) -> float:
        return self.mode.budget - self.elapsed()

    def need(self, seconds: float, what: str) -> None:
        """Skip ``what`` unless ``seconds`` of the budget remain."""
        if self.time_left() < seconds:
            raise SkipScenario(f"{what}: skipped, {self.time_left():.0f}s of the budget left")

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.progress.note(f"note: {text}")

    # -- shared processes ----------------------------------------------------------------

    def redis_url(self) -> str:
        """The run's redis-server (AOF everysec), started on first use."""
        if self._redis is None:
            self._redis = self.procs.redis()
        return self._redis[1]

    def main_silo(self) -> tuple[Child, str]:
        """The silo of the call, query, tell and activate scenarios, started on first use:
        a one-silo cluster on the run's Redis, or (smoke) the in-memory store."""
        if self._main is None:
            if self.mode.redis:
                self._main = self.procs.silo("silo-main", redis_url=self.redis_url())
            else:
                self._main = self.procs.silo("silo-main", data="memory://")
        return self._main

    def stop_main_silo(self) -> None:
        if self._main is not None:
            self._main[0].stop()
            self._main = None

    def fresh_redis(self, name: str) -> tuple[Child, str]:
        """A redis-server of its own, for scenarios that must not inherit others' data."""
        return self.procs.redis(name)

    # -- load ------------------------------------------------------------------------------

    def load(self, spec: LoadSpec, label: str) -> dict[str, Any]:
        """Run one load generator process to completion; its JSON result."""
        return self.spawn_load(spec, label).result()

    def spawn_load(self, spec: LoadSpec, label: str) -> Load:
        """Start one load generator process; ``result()`` waits for it."""
        self.progress.start(label)
        return Load(self, spec, label)

    def timed(self, spec: LoadSpec, label: str) -> dict[str, Any]:
        """``mode.runs`` timed runs of ``spec``; each figure's median, and the runs."""
        runs = []
        for i in range(self.mode.runs):
            suffix = f" ({i + 1}/{self.mode.runs})" if self.mode.runs > 1 else ""
            runs.append(self.load(spec, label + suffix))
        self.progress.advance()
        merged = median_of(runs)
        merged["label"] = label
        return merged

    def spec(self, kind: str, urls: list[str], **fields: Any) -> LoadSpec:
        """A timed spec with this mode's duration, warm-up and actor count."""
        base = LoadSpec(
            kind=kind,
            urls=urls,
            duration=self.mode.duration,
            warmup=self.mode.warmup,
            key_count=self.mode.actors,
        )
        return replace(base, **fields)


class Load:
    """A running load generator process, bounded by its spec's time plus a margin."""

    def __init__(self, bench: Bench, spec: LoadSpec, label: str) -> None:
        self.bench = bench
        self.label = label
        self.bound = spec.warmup + spec.duration + spec.timeout + 30.0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", json.dumps(asdict(spec))],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=self.bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # by pid: this is our own child
            self.proc.communicate()
            raise RuntimeError(
                f"load generator for {self.label} ran past {self.bound:.0f}s"
            ) from None
        if self.proc.returncode != 0:
            raise RuntimeError(f"load generator for {self.label} failed:\n{err[-2000:]}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if result.get("first_error"):
            self.bench.note(
                f"{self.label}: {result['errors']} errors, first: {result['first_error']}"
            )
        return result
