"""A progress bar for long command-line work: one line on stderr, redrawn in place, and
nothing at all when stderr is not a terminal (a log file gets the log lines instead)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``label [#######.....] done/total  elapsed`` on a terminal; silent elsewhere."""

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, width: int = 30
    ) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.started = time.monotonic()
        try:
            self.enabled = self.stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False
        self._shown = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        done = min(max(done, 0), self.total)
        filled = self.width * done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.started
        self.stream.write(f"\r\x1b[2K{self.label} [{bar}] {done}/{self.total}  {elapsed:.1f}s")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the bar's line, so that what is printed next starts on a fresh one."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
