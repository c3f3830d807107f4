"""How long the client waits between attempts of one logical call."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``first`` seconds, doubling, never above ``cap``.

    The delay is drawn from the upper half of the current step, so a retry never fires at
    once (a silo that just refused needs a moment) while clients that failed together
    spread out instead of retrying in lockstep.
    """

    first: float = 0.05
    cap: float = 1.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        # Clamp the exponent: 2.0 ** large overflows to inf long after the cap applies anyway.
        step = min(self.cap, self.first * 2.0 ** min(retry, 32))
        return step / 2 + random.uniform(0.0, step / 2)
