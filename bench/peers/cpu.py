"""CPU seconds spent by processes, which a shared machine disturbs far less than
throughput: a process waiting for a core is slower, not more expensive. Stdlib only: the
Ray driver imports this under Ray's interpreter."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def tree(pid: int, own_only: bool = False) -> float:
    """User + system CPU seconds so far of ``pid`` (all its threads) and, unless
    ``own_only``, every live process under it (from Linux's /proc); 0.0 for a process
    that is gone."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if own_only:
            return total
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += tree(int(child))
    except (OSError, ValueError, IndexError):
        pass
    return total


def trees(pids: Iterable[int]) -> float:
    return sum(tree(pid) for pid in pids)


def reaped_children() -> float:
    """CPU seconds of this process's children that have exited and been waited for (a
    load generator, once its result is in)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def per_call_ms(seconds: float, row: Mapping[str, Any], warmup: float, duration: float) -> float:
    """``seconds`` of CPU per call, in ms: the calls of the warm-up (not counted in the
    row, but made and paid for) estimated at the measured rate."""
    ops = float(row.get("ops") or 0)
    calls = ops * (warmup + duration) / duration if duration > 0 else ops
    return round(seconds * 1000 / calls, 3) if calls > 0 else 0.0
