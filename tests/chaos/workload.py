"""One workload client process: calls the chaos actors and records every operation.

``python -m tests.chaos.workload --url URL --client c0 --seed 7 --history FILE`` runs until
it reads ``stop`` (or end of file) on stdin. Each operation is one line of JSON in the
history file, written when it ends: its idempotency key, start and end (``time.monotonic``,
one clock for every process of the machine), and its outcome:

- ``ok``: acknowledged, with the result;
- ``error``: a definite refusal (a 4xx, an ``ActorError``): it must have had no effect;
- ``unknown``: no answer in time (timeout, unreachable, still unavailable after retries):
  it may or may not have taken effect.

On ``stop`` the client lets its operations in flight finish, then *resolves* every unknown
mutation by sending it again with the same idempotency key, as the client API promises is
safe, and records the answer as a ``resolve`` line. The checker reads the lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bayou import BayouError, CallTimeout, Client, SiloUnreachable
from bayou.errors import RETRYABLE, InternalError
from tests.chaos.checker import digest_of

# The actors each workload uses; every client process shares them, so operations of
# different processes on one actor interleave.
KEYS: dict[str, list[str]] = {
    "chaos-counter": [f"c{i}" for i in range(48)],
    "chaos-list": [f"l{i}" for i in range(12)],
    "chaos-sink": [f"s{i}" for i in range(16)],
    "chaos-source": [f"r{i}" for i in range(8)],
    "chaos-alarm": [f"a{i}" for i in range(16)],
    "chaos-flow": [f"f{i}" for i in range(8)],
}

OP_TIMEOUT = 8.0  # one operation's deadline, over all its retries
RESOLVE_TIMEOUT = 20.0
MUTATIONS = frozenset({"add", "append", "tell", "relay", "arm", "flow"})


@dataclass
class Op:
    kind: str  # add, get, append, read, tell, relay, arm, flow
    type: str
    key: str
    method: str
    args: dict[str, Any]
    idem: str
    tell: bool = False


class Recorder:
    """Appends history lines to a file, one JSON object each."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.unknown: list[tuple[Op, dict[str, Any]]] = []
        self.counts: dict[str, int] = {"ok": 0, "error": 0, "unknown": 0}

    def write(self, line: dict[str, Any]) -> None:
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.out.flush()


_MAYBE_APPLIED = (*RETRYABLE, CallTimeout, SiloUnreachable, InternalError, OSError, TimeoutError)


def classify(exc: BaseException) -> str:
    """``error`` for a definite refusal; ``unknown`` where the call may have taken effect
    (an ``InternalError`` too: the silo failed without saying how far it got)."""
    if isinstance(exc, _MAYBE_APPLIED) or not isinstance(exc, BayouError):
        return "unknown"
    return "error"


async def perform(client: Client, op: Op, timeout: float) -> Any:
    if op.tell:
        return await client.tell(
            op.type, op.key, op.method, op.args, idempotency_key=op.idem, timeout=timeout
        )
    return await client.call(
        op.type, op.key, op.method, op.args, idempotency_key=op.idem, timeout=timeout
    )


async def run_op(client: Client, recorder: Recorder, op: Op) -> None:
    start, wall_start = time.monotonic(), time.time()
    line: dict[str, Any] = {
        "op": op.idem,
        "kind": op.kind,
        "type": op.type,
        "key": op.key,
        "args": op.args,
        "start": start,
        "wall_start": wall_start,
    }
    try:
        result = await perform(client, op, OP_TIMEOUT)
    except Exception as exc:
        line["outcome"] = classify(exc)
        line["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    else:
        line["outcome"] = "ok"
        line["result"] = digest_of(result) if op.kind == "read" else result
    line["end"], line["wall_end"] = time.monotonic(), time.time()
    recorder.counts[line["outcome"]] += 1
    if line["outcome"] == "unknown" and op.kind in MUTATIONS:
        recorder.unknown.append((op, line))
    recorder.write(line)


async def resolve(client: Client, recorder: Recorder, op: Op, until: float, tries: int = 3) -> None:
    """Send an unknown mutation again with its key: its answer settles what happened.
    Gives up at ``until`` (monotonic): what is still unknown then stays unknown."""
    line: dict[str, Any] = {"resolve": op.idem, "kind": op.kind, "type": op.type}
    for attempt in range(tries):
        budget = min(RESOLVE_TIMEOUT, until - time.monotonic())
        if budget <= 0.1:
            line["outcome"], line["error"] = "unknown", "resolution time is over"
            break
        try:
            result = await perform(client, op, budget)
        except Exception as exc:
            line["outcome"] = classify(exc)
            line["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            if line["outcome"] == "error" or attempt == tries - 1:
                break
        else:
            line["outcome"] = "ok"
            line["result"] = result
            break
    line["end"], line["wall_end"] = time.monotonic(), time.time()
    recorder.write(line)


class Workload:
    """The client's tasks: each loops over one kind of operation until told to stop."""

    def __init__(self, client: Client, recorder: Recorder, name: str, seed: int) -> None:
        self.client = client
        self.recorder = recorder
        self.name = name
        self.rng = random.Random(f"{name}-{seed}")
        self.stopping = asyncio.Event()
        self.seq = 0

    def idem(self, kind: str) -> str:
        self.seq += 1
        return f"{self.name}-{kind}-{self.seq}"

    def pick(self, type_name: str) -> str:
        return self.rng.choice(KEYS[type_name])

    async def loop(self, make: Callable[[], Op], pause: float) -> None:
        while not self.stopping.is_set():
            await run_op(self.client, self.recorder, make())
            if pause:
                await asyncio.sleep(self.rng.uniform(0, 2 * pause))

    def counter(self) -> Op:
        key = self.pick("chaos-counter")
        if self.rng.random() < 0.1:
            return Op("get", "chaos-counter", key, "get", {}, self.idem("get"))
        n = self.rng.randint(1, 5)
        return Op("add", "chaos-counter", key, "add", {"n": n}, self.idem("add"))

    def sequence(self) -> Op:
        key = self.pick("chaos-list")
        if self.rng.random() < 0.2:
            return Op("read", "chaos-list", key, "read", {}, self.idem("read"))
        idem = self.idem("append")
        return Op("append", "chaos-list", key, "append", {"value": idem}, idem)

    def tell(self) -> Op:
        idem = self.idem("tell")
        key = self.pick("chaos-sink")
        return Op("tell", "chaos-sink", key, "take", {"tag": idem}, idem, tell=True)

    def relay(self) -> Op:
        idem = self.idem("relay")
        args = {"tag": idem, "sink": self.pick("chaos-sink")}
        return Op("relay", "chaos-source", self.pick("chaos-source"), "relay", args, idem)

    def arm(self) -> Op:
        idem = self.idem("arm")
        args = {"name": idem, "due_in": round(self.rng.uniform(0.5, 4.0), 2)}
        return Op("arm", "chaos-alarm", self.pick("chaos-alarm"), "arm", args, idem)

    def flow(self) -> Op:
        idem = self.idem("flow")
        args = {"run_id": idem, "steps": 3}
        return Op("flow", "chaos-flow", self.pick("chaos-flow"), "flow", args, idem, tell=True)

    def tasks(self, scale: float) -> list[Awaitable[None]]:
        def pause(seconds: float) -> float:
            return seconds / scale

        return [
            *(self.loop(self.counter, pause(0.02)) for _ in range(3)),
            *(self.loop(self.sequence, pause(0.03)) for _ in range(2)),
            self.loop(self.tell, pause(0.05)),
            self.loop(self.relay, pause(0.1)),
            self.loop(self.arm, pause(0.3)),
            self.loop(self.flow, pause(0.5)),
        ]


async def wait_for_stop() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"stop":
            return


async def main(args: argparse.Namespace, out: TextIO) -> None:
    """Run the workload, appending its history to ``out``."""
    recorder = Recorder(out)
    async with Client(args.url, timeout=OP_TIMEOUT, max_attempts=1000) as client:
        workload = Workload(client, recorder, args.client, args.seed)
        running = [asyncio.ensure_future(t) for t in workload.tasks(args.scale)]
        print(json.dumps({"started": args.client}), flush=True)
        stop = asyncio.ensure_future(wait_for_stop())
        await asyncio.wait([stop, *running], return_when=asyncio.FIRST_COMPLETED)
        workload.stopping.set()
        await asyncio.gather(*running)
        # Resolve a few at a time: enough to be quick, few enough not to pile up.
        gate = asyncio.Semaphore(16)
        until = time.monotonic() + args.resolve_seconds

        async def settle(op: Op) -> None:
            async with gate:
                await resolve(client, recorder, op, until)

        await asyncio.gather(*(settle(op) for op, _ in recorder.unknown))
    print(json.dumps({"done": args.client, **recorder.counts}), flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history", required=True)
    parser.add_argument("--scale", type=float, default=1.0, help="rate multiplier")
    parser.add_argument("--resolve-seconds", type=float, default=60.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    import uvloop

    arguments = parse()
    with Path(arguments.history).open("a") as history:
        uvloop.run(main(arguments, history))
