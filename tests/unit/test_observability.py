"""Metrics, introspection, structured logs and the progress bar, on in-process silos."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from bayou import (
    Actor,
    ActorError,
    App,
    InvalidArguments,
    SiloSettings,
    UnknownActorType,
    actor,
    query,
)
from bayou.cli import _describe_actor
from bayou.progress import ProgressBar
from bayou.runtime import logs, metrics
from bayou.runtime.dashboard import local_stats, page
from bayou.runtime.introspection import inspect_actor
from bayou.runtime.silo import Silo
from bayou.storage.memory import MemoryStorage
from bayou.testing import FakeClock, local_silo
from tests.unit.pattern_actors import Hasher

actor_log = logging.getLogger("tests.observed")


class Tally(BaseModel):
    total: int = 0


@actor("observed")
class Observed(Actor[Tally]):
    async def add(self, n: int) -> int:
        actor_log.info("adding %d", n)
        self.state.total += n
        return self.state.total

    async def fail(self) -> None:
        actor_log.error("about to fail")
        raise LookupError("no such thing")

    @query
    async def total(self) -> int:
        return self.state.total


def make_app(**settings: Any) -> App:
    return App([Observed], SiloSettings(**settings))


def scrape(silo: Silo) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the silo's exposition, by name and sorted labels."""
    body, content_type = metrics.render(metrics.registry_for(silo))
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# -- metrics ---------------------------------------------------------------------------------


async def test_calls_are_counted_by_type_method_and_outcome() -> None:
    async with local_silo(make_app()) as silo:
        before = scrape(silo)
        assert value(before, "bayou_calls_total", type="observed", method="add", outcome="ok") == 0
        for n in range(3):
            await silo.call("observed", "a", "add", {"n": n})
        with pytest.raises(InvalidArguments):
            await silo.call("observed", "a", "add", {"n": "many"})
        with pytest.raises(ActorError):
            await silo.call("observed", "b", "fail", {})
        await silo.call("observed", "a", "total", {})
        await silo.tell("observed", "c", "add", {"n": 1})
        after = scrape(silo)
    calls = {"type": "observed", "method": "add"}
    assert value(after, "bayou_calls_total", **calls, outcome="ok") == 3
    assert value(after, "bayou_calls_total", **calls, outcome="InvalidArguments") == 1
    failed = {"type": "observed", "method": "fail", "outcome": "ActorError"}
    assert value(after, "bayou_calls_total", **failed) == 1
    assert value(after, "bayou_calls_total", type="observed", method="total", outcome="ok") == 1
    assert value(after, "bayou_tells_total", **calls, outcome="ok") == 1
    # Every call is in the latency histogram, and its buckets are cumulative up to +Inf.
    assert value(after, "bayou_call_duration_seconds_count", **calls) == 4
    assert value(after, "bayou_call_duration_seconds_bucket", **calls, le="+Inf") == 4
    assert value(after, "bayou_call_duration_seconds_sum", **calls) > 0
    # Activations, journal, snapshots and identity are read at scrape time.
    assert value(after, "bayou_activations", type="observed") == 3
    assert value(after, "bayou_activations_created_total") == 3
    assert value(after, "bayou_journal_appends_total") >= 4  # 3 adds and the failure
    assert value(after, "bayou_journal_batch_size_count") >= 1
    assert value(after, "bayou_partitions_owned") == 1024
    assert value(after, "bayou_members", status="active") == 1
    assert value(after, "bayou_silo_ready") == 1
    assert (
        "bayou_silo_info",
        (("cluster", ""), ("silo", silo.silo_id), ("version", "0.1.0")),
    ) in after
    assert value(after, "process_resident_memory_bytes") > 0


async def test_latency_buckets_follow_prometheus_le_semantics() -> None:
    stats = metrics.CallStats()
    stats.observe("ok", metrics.LATENCY_BUCKETS[0])  # equal to a bound: that bound's bucket
    stats.observe("ok", 1e9)  # past the last bound: +Inf
    assert stats.buckets[0] == 1
    assert stats.buckets[-1] == 1
    assert stats.count == 2


async def test_passivations_snapshots_and_replay_lengths_are_exported() -> None:
    clock = FakeClock()
    storage = MemoryStorage()
    app = make_app(idle_timeout=60, snapshot_every=1000, snapshot_interval=10_000)
    async with local_silo(app, storage=storage, clock=clock) as silo:
        for n in range(7):
            await silo.call("observed", "a", "add", {"n": n})
        assert value(scrape(silo), "bayou_journal_unsnapshotted_records") == 7
        await clock.advance(61)  # idle: snapshotted and passivated
        await silo.catalog.collect()
        samples = scrape(silo)
        assert value(samples, "bayou_passivations_total") == 1
        assert value(samples, "bayou_snapshots_total") == 1
        assert value(samples, "bayou_activations", type="observed") == 0
    # A crash after 4 more records: the next activation replays exactly those.
    async with local_silo(app, storage=storage, clock=clock, stop=False) as silo:
        for n in range(4):
            await silo.call("observed", "a", "add", {"n": n})
    async with local_silo(app, storage=storage, clock=clock) as silo:
        await silo.call("observed", "a", "total", {})
        samples = scrape(silo)
        assert value(samples, "bayou_activation_replayed_records_bucket", le="1.0") == 0
        assert value(samples, "bayou_activation_replayed_records_bucket", le="5.0") == 1
        assert value(samples, "bayou_activation_replayed_records_gsum") == 4


async def test_failures_are_kept_for_the_dashboard_but_not_caller_mistakes() -> None:
    async with local_silo(make_app()) as silo:
        with pytest.raises(ActorError):
            await silo.call("observed", "k/1", "fail", {})
        with pytest.raises(InvalidArguments):
            await silo.call("observed", "k/1", "add", {})
        stats = local_stats(silo)
    assert stats["calls"] == {"total": 2, "failed": 2, "by_type": {"observed": 2}}
    assert [e["error"] for e in stats["errors"]] == ["ActorError"]
    error = stats["errors"][0]
    assert error["actor"] == "observed/k/1"
    assert error["method"] == "fail"
    assert error["status"] == 500
    assert "no such thing" in error["message"]
    assert error["silo"] == silo.silo_id


def test_the_dashboard_page_loads_nothing_from_elsewhere() -> None:
    html = page().decode()
    assert "/v1/dashboard.json" in html
    # No script, style, font or image from anywhere: the page must work offline.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html


# -- introspection ---------------------------------------------------------------------------


async def test_inspect_reads_memory_when_active_and_storage_when_not() -> None:
    clock = FakeClock()
    app = make_app(idle_timeout=60, snapshot_every=3, snapshot_interval=10_000)
    async with local_silo(app, clock=clock) as silo:
        never = await inspect_actor(silo, "observed", "nobody")
        assert never["status"] == "inactive"
        assert never["state_source"] == "none"
        assert never["journal_length"] == 0
        for n in (1, 2, 3, 4):  # a snapshot after the third record
            await silo.call("observed", "a", "add", {"n": n})
        active = await inspect_actor(silo, "observed", "a")
        assert active["owner"]["silo"] == silo.silo_id
        assert active["status"] == "active"
        assert active["state"] == {"total": 10}
        assert active["state_source"] == "memory"
        assert (active["seq"], active["snapshot_seq"], active["journal_length"]) == (4, 3, 1)
        assert active["kind"] == "actor"
        assert active["epoch"] >= 1
        # Passivated (snapshotted on the way out): described from storage, not activated.
        await clock.advance(61)
        await silo.catalog.collect()
        stored = await inspect_actor(silo, "observed", "a")
        assert stored["status"] == "inactive"
        assert stored["state_source"] == "snapshot"
        assert stored["state"] == {"total": 10}
        assert (stored["seq"], stored["snapshot_seq"], stored["journal_length"]) == (4, 4, 0)
        assert silo.catalog.peek("observed", "a") is None
        loaded = await inspect_actor(silo, "observed", "a", activate=True)
        assert loaded["status"] == "active"
        assert loaded["state"] == {"total": 10}


async def test_inspect_a_stateless_worker_names_no_owner() -> None:
    async with local_silo(App([Hasher])) as silo:
        await silo.call("hasher", "any", "digest", {"text": "x"})
        described = await inspect_actor(silo, "hasher", "any")
        with pytest.raises(UnknownActorType):
            await inspect_actor(silo, "nosuch", "k")
    assert described["kind"] == "stateless"
    assert described["owner"] is None
    assert described["local_activations"] == 1


def test_inspect_output_for_a_person() -> None:
    text = _describe_actor(
        {"type": "observed", "key": "a", "kind": "actor", "partition": 7,
         "owner": {"silo": "silo-1", "address": "http://10.0.0.1:8080"}, "status": "inactive",
         "seq": 12, "snapshot_seq": 10, "journal_length": 2, "state_source": "snapshot",
         "state": {"total": 3}, "inbox": 1, "reminders": [{"name": "tick"}]}
    )  # fmt: skip
    assert "owner      silo-1 at http://10.0.0.1:8080" in text
    assert "seq 12, snapshot at 10, 2 records since" in text
    assert "reminders  tick" in text
    assert "the records since are not applied" in text
    assert text.endswith('{\n  "total": 3\n}')


# -- logs --------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
async def test_logs_are_json_with_silo_actor_and_invocation_ids() -> None:
    stream = io.StringIO()
    logs.configure_logging("INFO", stream=stream, silo="silo-1")  # not a terminal: JSON
    async with local_silo(make_app()) as silo:
        await silo.call("observed", "a", "add", {"n": 5}, idempotency_key="order-17")
        with pytest.raises(ActorError):
            await silo.call("observed", "b", "fail", {}, idempotency_key="order-18")
        logs.bind_silo(silo.silo_id)  # what `bayou silo` does once it knows its id
        actor_log.warning("outside", extra={"order": 17})
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records, "nothing was logged"
    assert {r["silo"] for r in records} == {"silo-1", silo.silo_id}
    assert all(r["time"].endswith("+00:00") for r in records)
    adding = next(r for r in records if r["message"] == "adding 5")
    assert adding["actor"] == "observed/a"
    assert adding["invocation"] == "order-17"
    assert adding["level"] == "INFO"
    assert adding["logger"] == "tests.observed"
    failing = next(r for r in records if r["message"] == "about to fail")
    assert (failing["actor"], failing["invocation"]) == ("observed/b", "order-18")
    outside = next(r for r in records if r["message"] == "outside")
    assert outside["silo"] == silo.silo_id
    assert "actor" not in outside
    assert outside["order"] == 17


@pytest.mark.usefixtures("restore_logging")
def test_logs_on_a_terminal_are_lines_for_people() -> None:
    stream = _Terminal()
    logs.configure_logging("INFO", stream=stream, silo="silo-x")
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        logging.getLogger("bayou.test").exception("it broke")
    text = stream.getvalue()
    # Each line first erases the terminal's line, where a progress bar may be drawn.
    assert re.match(r"\r\x1b\[2K\d\d:\d\d:\d\d ERROR   bayou.test \[silo-x\] it broke\n", text), (
        text
    )
    assert "RuntimeError: kaput" in text
    lines = io.StringIO()
    logs.configure_logging("INFO", stream=lines, silo="silo-x")
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        logging.getLogger("bayou.test").exception("it broke")
    record = json.loads(lines.getvalue())
    assert record["exception"].endswith("RuntimeError: kaput")


# -- progress ----------------------------------------------------------------------------------


def test_the_progress_bar_draws_only_on_a_terminal() -> None:
    log = io.StringIO()
    bar = ProgressBar("draining", 4, stream=log)
    bar.update(2)
    bar.close()
    assert log.getvalue() == ""
    terminal = _Terminal()
    bar = ProgressBar("draining", 4, stream=terminal, width=8)
    bar.update(2)
    bar.update(4)
    bar.close()
    assert "draining [####....] 2/4" in terminal.getvalue()
    assert "draining [########] 4/4" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n")


def test_the_dashboard_html_ships_in_the_package() -> None:
    source = Path(__file__).resolve().parents[2] / "bayou" / "runtime" / "dashboard.html"
    assert page() == source.read_bytes()
