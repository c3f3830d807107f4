"""How big and how long each scenario runs, per mode: ``smoke`` (the CI check, seconds),
``quick`` (under two minutes) and ``full`` (medians of several runs, ~15 minutes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    budget: float  # seconds for the whole run; scenarios past it are skipped, not cut short
    runs: int  # runs of each timed measurement; the report keeps the median
    duration: float  # seconds of one timed measurement
    warmup: float  # seconds of load before a timed measurement starts counting
    actors: int  # actors the call workload spreads over
    high: int  # the throughput concurrency
    redis: bool  # silos on Redis (a one-silo cluster); else the embedded store
    scenarios: tuple[str, ...]
    activate: int = 0  # cold actors, first call each, at the throughput concurrency
    activate_serial: int = 0  # ... and one at a time, for latency
    tells: int = 0  # tells for "until applied"
    replay_lengths: tuple[int, ...] = ()
    replay_actors: int = 0  # actors per journal length
    snapshot_every: int = 100
    memory: tuple[int, ...] = ()  # idle activations to hold, each a separate measurement
    recover_actors: int = 0
    recover_silos: int = 3
    scale_seconds: float = 0.0
    redis_benchmark_requests: int = 0
    # streams: one measurement per (store, reader, pause between writes in ms, items);
    # store "main" is the main silo (Redis; memory in smoke), "sqlite" an embedded one.
    stream_runs: tuple[tuple[str, str, float, int], ...] = ()
    stream_seconds: float = 30.0  # a writer stops there even if items are left
    reminders: int = 0  # far-future reminders registered, one per actor
    reminders_due: int = 0  # ... plus this many due already
    reminders_fire: int = 0  # reminders set on a silo afterwards, due 2 s later; 0: no silo


# Memory last: it is the one that grows with the budget left (and is skipped without).
ALL = ("ceilings", "call", "query", "tell", "activate", "replay", "recover", "scale", "memory")
# Streams and reminders would push quick mode past its two minutes: full mode (and --only).
EVERY = (
    *("ceilings", "call", "query", "tell", "activate", "replay", "streams", "reminders"),
    *("recover", "scale", "memory"),
)

STORES = ("main", "sqlite")
READERS = ("client", "ndjson", "sse")

SMOKE = Mode(
    name="smoke",
    budget=60.0,
    runs=1,
    duration=0.3,
    warmup=0.1,
    actors=50,
    high=8,
    redis=False,
    scenarios=("ceilings", "call", "streams", "reminders"),
    stream_runs=(("main", "client", 0.0, 50),),
    stream_seconds=10.0,
    reminders=2_000,
    reminders_due=10,
)

QUICK = Mode(
    name="quick",
    budget=112.0,
    runs=1,
    duration=1.5,
    warmup=0.3,
    actors=10_000,
    high=256,
    redis=True,
    scenarios=ALL,
    activate=3_000,
    activate_serial=300,
    tells=3_000,
    replay_lengths=(0, 50, 99, 100, 150, 250),
    replay_actors=10,
    memory=(20_000,),
    recover_actors=3_000,
    recover_silos=2,
    scale_seconds=6.0,
    redis_benchmark_requests=200_000,
    stream_runs=(
        *(("main", reader, 0.0, 2_000) for reader in READERS),
        ("sqlite", "client", 0.0, 2_000),
    ),
    stream_seconds=15.0,
    reminders=100_000,
    reminders_due=100,
    reminders_fire=100,
)

FULL = Mode(
    name="full",
    budget=1800.0,
    runs=3,
    duration=5.0,
    warmup=1.0,
    actors=10_000,
    high=256,
    redis=True,
    scenarios=EVERY,
    activate=100_000,
    activate_serial=1_000,
    tells=20_000,
    replay_lengths=(0, 25, 50, 99, 100, 150, 199, 200, 500, 1000),
    replay_actors=20,
    memory=(100_000, 1_000_000),
    recover_actors=10_000,
    recover_silos=3,
    scale_seconds=15.0,
    redis_benchmark_requests=1_000_000,
    # Back to back, then paced (an item every ~5 ms, like a fast LLM's tokens) so that the
    # reader is always waiting when an item is written.
    stream_runs=tuple(
        (store, reader, gap, items)
        for gap, items in ((0.0, 10_000), (5.0, 2_000))
        for store in STORES
        for reader in READERS
    ),
    stream_seconds=30.0,
    reminders=1_000_000,
    reminders_due=100,
    reminders_fire=100,
)

MODES = {mode.name: mode for mode in (SMOKE, QUICK, FULL)}
