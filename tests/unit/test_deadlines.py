"""``Deadlines``: many deadlines behind one timer; each late entry reported once, in time."""

from __future__ import annotations

import asyncio

from bayou.link.deadlines import Deadlines


async def test_each_late_entry_is_reported_once_and_popped_ones_never() -> None:
    loop = asyncio.get_running_loop()
    late: list[tuple[str, int]] = []
    deadlines: Deadlines[str, int] = Deadlines(loop, lambda k, v: late.append((k, v)))
    now = loop.time()
    deadlines.add("slow", now + 0.20, 3)
    deadlines.add("fast", now + 0.05, 1)  # earlier than the armed timer: re-armed
    deadlines.add("gone", now + 0.05, 2)
    assert deadlines.pop("gone") == 2 and deadlines.pop("gone") is None
    await asyncio.sleep(0.12)
    assert late == [("fast", 1)] and list(deadlines) == ["slow"]
    await asyncio.sleep(0.15)
    assert late == [("fast", 1), ("slow", 3)] and len(deadlines) == 0
    deadlines.add("never", loop.time() + 0.05, 4)
    deadlines.clear()
    await asyncio.sleep(0.1)
    assert late == [("fast", 1), ("slow", 3)]
