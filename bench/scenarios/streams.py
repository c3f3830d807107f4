"""``streams``: how soon a reader that is already waiting sees a stream item an actor wrote
(the goal: within 5 ms, good enough for streaming an LLM's tokens).

One measurement, on one silo: a reader process holds the stream open (the Python client's
``read_stream``, a plain aiohttp NDJSON read, or server-sent events) while a writer
process (the Python client over the link, one call at a time) calls ``streamer.emit``
once per item; each call's handler stamps its item with ``time.time()`` right before
``ctx.write_stream``. Every process runs on this machine, one wall clock, so the reader's
``time.time()`` on receipt minus the stamp is the item's latency end to end. The stamp is
taken before the commit (the instant a commit lands is visible to no one), so that figure
includes making the item durable. The writer also notes when each reply arrived (the item
was durable by then): ``reply -> seen`` compares that with the reader's receipt, and is
near zero, or negative, when the reader is woken as soon as the caller is.

A marker item is written before the reader starts; the reader says it is ready once it has
received it, so its read is open and waiting when the measured items are written. The
writer closes the stream when done, which ends the read. Both processes are bounded in
items and in time.

Run as ``python -m bench.scenarios.streams '<json Side>'``, this module is the reader or
the writer; each writes its result as JSON to the file its ``Side`` names.
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from types import TracebackType
from typing import Any

from bench.context import Bench, SkipScenario
from bench.procs import ROOT
from bench.stats import percentile

ACTOR = "streamer"
GOAL_MS = 5.0
READY_TIMEOUT = 15.0


@dataclass
class Side:
    """What one reader or writer process does."""

    role: str  # reader | writer
    url: str
    key: str
    stream: str
    reader: str = "client"  # client | ndjson | sse
    items: int = 0
    gap: float = 0.0  # seconds the writer pauses after each call
    seconds: float = 30.0  # the longest the process reads or writes
    out: str = ""  # where the result goes, as JSON (a pipe would need draining meanwhile)


# -- the scenario (in the harness's process) ------------------------------------------------


def run(bench: Bench) -> dict[str, Any]:
    silos: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    sqlite = None
    try:
        for n, (store, reader, gap_ms, items) in enumerate(bench.mode.stream_runs):
            what = f"streams: {store} {reader}"
            bench.need(items * (gap_ms + 2.0) / 1000 + 5.0, what)
            if store not in silos:
                if store == "sqlite":
                    sqlite, silos[store] = bench.procs.silo(
                        "silo-streams", data=str(bench.workdir / "streams.db")
                    )
                else:
                    silos[store] = bench.main_silo()[1]
            label = _store_label(bench, store)
            rows.append(_measure(bench, label, silos[store], reader, gap_ms, items, n))
            bench.progress.advance()
    except SkipScenario as exc:
        if not rows:
            raise
        bench.note(str(exc))
    finally:
        if sqlite is not None:
            sqlite.stop()
    worst = max(rows, key=lambda r: r["written_to_seen"]["p99_ms"])
    return {
        "goal_ms": GOAL_MS,
        "rows": rows,
        "worst_p99_ms": worst["written_to_seen"]["p99_ms"],
        "worst_max_ms": max(r["written_to_seen"]["max_ms"] for r in rows),
        "worst": f"{worst['store']}, {worst['reader']}",
    }


def _store_label(bench: Bench, store: str) -> str:
    if store == "sqlite":
        return "sqlite"
    return "redis" if bench.mode.redis else "memory"


def _measure(
    bench: Bench, store: str, url: str, reader: str, gap_ms: float, items: int, n: int
) -> dict[str, Any]:
    paced = f", one every {gap_ms:g} ms" if gap_ms else ""
    bench.progress.start(f"streams: {store}, {reader} reader, {items} items{paced}")
    key = f"s-{store}"
    stream = f"{reader}-{n}"
    _emit(url, key, stream, 0)
    seconds = bench.mode.stream_seconds
    out = str(bench.workdir / f"stream-{n}-")
    side = Side(
        "reader", url, key, stream, reader, items, gap_ms / 1000, seconds + 15.0, out + "reader"
    )
    with _Process(side) as reading:
        reading.wait_ready()
        writer = replace(side, role="writer", seconds=seconds, out=out + "writer")
        with _Process(writer) as writing:
            written = writing.result(seconds + 30.0)
        read = reading.result(15.0)
    return _figures(store, reader, gap_ms, written, read)


def _emit(url: str, key: str, stream: str, i: int) -> None:
    """One ``emit`` over plain HTTP: the marker item the reader waits for before it is ready."""
    request = urllib.request.Request(
        f"{url}/v1/actors/{ACTOR}/{key}/emit",
        data=json.dumps({"stream": stream, "i": i}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10.0) as response:
        response.read()


class _Process:
    """A reader or writer child; killed (by its pid) if still running when the block ends."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scenarios.streams", json.dumps(asdict(side))],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def __enter__(self) -> _Process:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()

    def wait_ready(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        # select, so that a reader that never connects cannot hang the harness.
        readable, _, _ = select.select([stdout], [], [], READY_TIMEOUT)
        line = stdout.readline() if readable else b""
        if line.strip() != b"ready":
            self.proc.kill()
            _, err = self.proc.communicate()
            raise RuntimeError(
                f"{self.side.reader} stream reader not ready after {READY_TIMEOUT:.0f}s:\n"
                + err.decode(errors="replace")[-2000:]
            )

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise RuntimeError(f"stream {self.side.role} ran past {timeout:.0f}s") from None
        if self.proc.returncode != 0:
            raise RuntimeError(
                f"stream {self.side.role} failed:\n{err.decode(errors='replace')[-2000:]}"
            )
        with open(self.side.out) as source:
            result: dict[str, Any] = json.load(source)
        return result


def _figures(
    store: str, reader: str, gap_ms: float, written: dict[str, Any], read: dict[str, Any]
) -> dict[str, Any]:
    calls: list[list[float]] = written["rows"]  # [i, sent, stamp, replied]
    seen: list[list[float]] = read["seen"]  # [i, stamp, seen]
    replied = {int(row[0]): row[3] for row in calls}
    latency = [at - stamp for _, stamp, at in seen]
    after_reply = [at - replied[int(i)] for i, _, at in seen if int(i) in replied]
    elapsed = written["ended"] - written["started"]
    return {
        "store": store,
        "reader": reader,
        "gap_ms": gap_ms,
        "written": len(calls),
        "seen": len(seen),
        # Exactly once and in order: what read_stream promises, checked on the way.
        "complete_in_order": [int(row[0]) for row in seen] == list(range(1, len(calls) + 1)),
        "items_per_s": round(len(calls) / elapsed, 1) if elapsed > 0 else 0.0,
        "written_to_seen": _spread(latency),
        "over_goal": sum(v * 1000 > GOAL_MS for v in latency),
        "reply_to_seen": _spread(after_reply),
        # The rest of written -> seen: the commit and the reply's way back to the writer.
        "written_to_reply": _spread([row[3] - row[2] for row in calls]),
        "call": _spread([row[3] - row[1] for row in calls]),
        "reader_timed_out": read["timed_out"],
    }


def _spread(values: list[float]) -> dict[str, float]:
    """Percentiles of ``values`` (seconds, possibly negative) in milliseconds."""
    ordered = sorted(values)

    def ms(value: float) -> float:
        return round(value * 1000, 3)

    return {
        "p50_ms": ms(percentile(ordered, 0.50)),
        "p90_ms": ms(percentile(ordered, 0.90)),
        "p99_ms": ms(percentile(ordered, 0.99)),
        "max_ms": ms(ordered[-1]) if ordered else 0.0,
        "min_ms": ms(ordered[0]) if ordered else 0.0,
    }


# -- the reader and the writer (child processes) ------------------------------------------

Seen = Callable[[Any, float], None]


async def _read(side: Side) -> dict[str, Any]:
    seen: list[tuple[int, float, float]] = []
    ready = False

    def got(item: Any, at: float) -> None:
        nonlocal ready
        if not ready:  # the marker: the read is open, the writer may start
            ready = True
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            return
        seen.append((int(item["i"]), float(item["t"]), at))

    timed_out = False
    try:
        async with asyncio.timeout(side.seconds):
            if side.reader == "client":
                await _read_client(side, got)
            else:
                await _read_http(side, got, sse=side.reader == "sse")
    except TimeoutError:
        timed_out = True
    return {"seen": seen, "timed_out": timed_out}


async def _read_client(side: Side, got: Seen) -> None:
    from bayou.client import Client

    async with Client(side.url) as client:
        async for _, item in client.ref(ACTOR, side.key).read_stream(side.stream):
            got(item, time.time())


async def _read_http(side: Side, got: Seen, *, sse: bool) -> None:
    import aiohttp

    from bayou import wire

    url = f"{side.url}/v1/actors/{ACTOR}/{side.key}/streams/{side.stream}?wait={side.seconds:g}"
    accept = "text/event-stream" if sse else wire.NDJSON
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Accept": accept}) as response,
    ):
        response.raise_for_status()
        async for raw in response.content:
            at = time.time()
            line = raw.strip()
            if sse:
                if line.startswith(b"event: end"):
                    return
                if line.startswith(b"data: "):
                    got(json.loads(line[6:]), at)
            elif line:
                entry = json.loads(line)
                if entry.get("closed"):
                    return
                got(entry["item"], at)


async def _write(side: Side) -> dict[str, Any]:
    from bayou.client import Client

    rows: list[tuple[int, float, float, float]] = []
    async with Client(side.url, transport="link", timeout=10.0) as client:
        deadline = time.monotonic() + side.seconds
        started = time.time()
        for i in range(1, side.items + 1):
            if time.monotonic() >= deadline:
                break
            sent = time.time()
            stamp = await client.call(ACTOR, side.key, "emit", {"stream": side.stream, "i": i})
            replied = time.time()
            rows.append((i, sent, float(stamp), replied))
            if side.gap:
                await asyncio.sleep(side.gap)
        ended = time.time()
        await client.call(ACTOR, side.key, "finish", {"stream": side.stream})
    return {"rows": rows, "started": started, "ended": ended}


def main(argv: list[str]) -> int:
    import uvloop

    side = Side(**json.loads(argv[0]))
    result = uvloop.run(_read(side) if side.role == "reader" else _write(side))
    with open(side.out, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
