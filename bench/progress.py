"""A progress bar on stderr: steps done of steps planned, the current step, time spent."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, width: int = 28) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.started = time.monotonic()
        self._tty = self.stream.isatty()
        self.label = ""

    def start(self, label: str) -> None:
        """Show ``label`` as the step in progress."""
        self.label = label
        self._draw()

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        self._draw()

    def note(self, text: str) -> None:
        """A line above the bar (a skipped scenario, a missing tool)."""
        self._write(f"{text}\n")
        self._draw()

    def finish(self) -> None:
        self.done = self.total
        self._draw()
        self._write("\n")

    def _draw(self) -> None:
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.started
        line = f"[{bar}] {self.done}/{self.total} {elapsed:5.0f}s {self.label}"[:110]
        # Redrawn in place on a terminal; one line per step in a log.
        self._write(f"\r\x1b[2K{line}" if self._tty else f"{line}\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
