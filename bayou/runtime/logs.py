"""The silo's logs: one JSON object a line for machines, plain lines for people.

Every record carries the silo's id; a record logged while an invocation runs — by bayou
or by the handler's own ``logging`` calls — also carries the actor (``type/key``) and the
invocation id, read from the invocation's context variable. So a log pipeline can follow
one call across silos, and ``grep`` one actor's history, without the handler passing
anything along.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import traceback
from typing import Any, TextIO

from bayou.model import current_invocation

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "silo",
    "actor",
    "invocation",
    "replaying",
    "where",
}
_HUMAN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(silo)s%(where)s] %(message)s"


class ContextFilter(logging.Filter):
    """Stamps each record with ``silo``, and with ``actor`` and ``invocation`` (None outside
    an invocation); ``replaying`` is True for records logged while the journal is replayed."""

    def __init__(self, silo: str | None = None) -> None:
        super().__init__()
        self.silo = silo

    def filter(self, record: logging.LogRecord) -> bool:
        record.silo = self.silo
        ctx = current_invocation.get()
        if ctx is None:
            record.actor = record.invocation = None
            record.replaying = False
        else:
            record.actor = f"{ctx.actor_type}/{ctx.key}"
            record.invocation = ctx.invocation_id
            record.replaying = ctx.replaying
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, silo,
    actor, invocation, the exception's traceback if any, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "silo": getattr(record, "silo", None),
        }
        actor = getattr(record, "actor", None)
        if actor is not None:
            entry["actor"] = actor
            entry["invocation"] = getattr(record, "invocation", None)
            if getattr(record, "replaying", False):
                entry["replaying"] = True
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        return json.dumps(entry, default=str, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    """``time level logger [silo actor#invocation] message``, for a terminal.

    ``clear_line`` starts each record by erasing the terminal's current line, where a
    progress bar may be drawn (it is redrawn below on its next update)."""

    def __init__(self, *, clear_line: bool = False) -> None:
        super().__init__(_HUMAN_FORMAT, datefmt="%H:%M:%S")
        self._prefix = "\r\x1b[2K" if clear_line else ""

    def format(self, record: logging.LogRecord) -> str:
        actor = getattr(record, "actor", None)
        invocation = getattr(record, "invocation", None)
        record.where = f" {actor}#{invocation}" if actor is not None else ""
        if getattr(record, "silo", None) is None:
            record.silo = "-"
        return self._prefix + super().format(record)


def configure_logging(
    level: str | int = "INFO",
    *,
    silo: str | None = None,
    stream: TextIO | None = None,
    json_lines: bool | None = None,
) -> ContextFilter:
    """Send every log record to ``stream`` (stderr), JSON unless it is a terminal.

    ``json_lines`` forces one format or the other. Replaces the root logger's handlers;
    returns the filter, whose ``silo`` can be set once the silo's id is known.
    """
    stream = stream if stream is not None else sys.stderr
    terminal = _isatty(stream)
    if json_lines is None:
        json_lines = not terminal
    handler = logging.StreamHandler(stream)
    context = ContextFilter(silo)
    handler.addFilter(context)
    handler.setFormatter(JsonFormatter() if json_lines else HumanFormatter(clear_line=terminal))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    global _configured
    _configured = context
    return context


def bind_silo(silo: str) -> None:
    """Stamp every record from now on with this silo's id (one silo per process)."""
    if _configured is not None:
        _configured.silo = silo


_configured: ContextFilter | None = None  # the filter configure_logging installed


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where ``task`` is suspended, outermost first, following what each coroutine awaits
    down through the tasks it waits for: the line a hang report needs. (``Task.get_stack``
    shows only the outermost frame of a suspended coroutine.)"""
    lines: list[str] = []
    current: asyncio.Task[Any] | None = task
    while current is not None and len(lines) < 200:  # a cycle must not loop for ever
        lines.append(f"task {current.get_name()}")
        waited: Any = current.get_coro()
        while frame := getattr(waited, "cr_frame", None) or getattr(waited, "gi_frame", None):
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
            waited = getattr(waited, "cr_await", None) or getattr(waited, "gi_yieldfrom", None)
        # The future the innermost coroutine waits for (asyncio's own record of it).
        future = getattr(current, "_fut_waiter", None)
        current = future if isinstance(future, asyncio.Task) else None
        if current is None and future is not None:
            lines.append(f"  waiting for {future!r}")
    return "\n".join(lines)
