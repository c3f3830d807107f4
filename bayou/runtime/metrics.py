"""What a silo measures, and ``/metrics`` in the Prometheus text format.

Only calls and tells are measured as they happen, by ``Silo.call`` and ``Silo.tell`` on
the silo where they enter the cluster (so each is counted once, with the latency its caller
saw, forwarding included). They land in plain counters and bucket lists — no lock, no
label strings, well under a microsecond a call — that ``SiloCollector`` turns into metric
families when Prometheus scrapes. Everything else (activations, journal, snapshots,
forwards, fencing, membership, reminders) is read at scrape time from the counters the
runtime keeps anyway: measuring it costs the hot path nothing.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

import bayou
from bayou.errors import BayouError, CallTimeout, RequestError

if TYPE_CHECKING:
    from bayou.runtime.activation import Activation
    from bayou.runtime.silo import Silo

# Seconds. A durable call takes about a millisecond; the last buckets catch timeouts.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)  # fmt: skip
# Journal records replayed by an activation when it loaded (bounded by ``snapshot_every``).
REPLAY_BUCKETS = (0, 1, 5, 10, 25, 50, 100, 250, 500, 1000)
RECENT_ERRORS = 50  # failed calls kept for the dashboard
_MESSAGE_LIMIT = 300

now = time.perf_counter  # the clock call and tell durations are measured with


class CallStats:
    """Calls of one handler: outcomes, and a latency histogram (``LATENCY_BUCKETS`` + Inf)."""

    __slots__ = ("buckets", "outcomes", "seconds")

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.seconds = 0.0

    def observe(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] += 1
        # bisect_left: a value equal to a bound belongs to that bound's bucket (``le``).
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.seconds += seconds

    @property
    def count(self) -> int:
        return sum(self.buckets)


class Telemetry:
    """A silo's own measurements: calls and tells by handler and outcome, recent errors,
    ring changes. One per silo (``telemetry_of``); used from the silo's event loop only."""

    def __init__(self, silo: Silo) -> None:
        self.silo_id = silo.silo_id
        self.started = time.time()
        self.calls: dict[tuple[str, str], CallStats] = {}
        self.tells: dict[tuple[str, str], Counter[str]] = {}
        self.errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)
        self.errors_total = 0  # failures ever listed in ``errors``, for "new since" checks
        self.ring_changes = 0
        # (when, counts): activations by type, recounted at most once a second (O(n)).
        self.activations_cache: tuple[float, dict[str, int]] | None = None
        self._ring: tuple[str, ...] = silo.agent.ring.silos
        silo.agent.on_view(self._on_view)

    # -- the hot path ------------------------------------------------------------------------

    def call_done(self, type_name: str, method: str, started: float) -> None:
        stats = self.calls.get((type_name, method))
        if stats is None:
            stats = self.calls[(type_name, method)] = CallStats()
        stats.observe("ok", now() - started)

    def call_failed(
        self, type_name: str, method: str, key: str, started: float, exc: BaseException
    ) -> None:
        stats = self.calls.get((type_name, method))
        if stats is None:
            stats = self.calls[(type_name, method)] = CallStats()
        stats.observe(self._failure(type_name, method, key, exc, "call"), now() - started)

    def watch_call(
        self, type_name: str, method: str, key: str, deadline: float, future: asyncio.Future[Any]
    ) -> None:
        """Measure a call answered from ``future`` (``Silo.call_nowait``), as ``call_done``
        and ``call_failed`` would; resolved past ``deadline`` (loop time), its caller got a
        ``CallTimeout``, and so it is counted."""
        stats = self.calls.get((type_name, method))
        if stats is None:
            stats = self.calls[(type_name, method)] = CallStats()
        future.add_done_callback(_CallWatch(self, stats, type_name, method, key, deadline))

    def watch_tell(
        self, type_name: str, method: str, key: str, deadline: float, future: asyncio.Future[Any]
    ) -> None:
        """Count a tell answered from ``future`` (``Silo.tell_nowait``), as ``tell_done`` and
        ``tell_failed`` would (stored past ``deadline``: its caller got a CallTimeout)."""
        future.add_done_callback(_TellWatch(self, type_name, method, key, deadline))

    def tell_done(self, type_name: str, method: str) -> None:
        outcomes = self.tells.get((type_name, method))
        if outcomes is None:
            outcomes = self.tells[(type_name, method)] = Counter()
        outcomes["ok"] += 1

    def tell_failed(self, type_name: str, method: str, key: str, exc: BaseException) -> None:
        outcomes = self.tells.get((type_name, method))
        if outcomes is None:
            outcomes = self.tells[(type_name, method)] = Counter()
        outcomes[self._failure(type_name, method, key, exc, "tell")] += 1

    def _failure(self, type_name: str, method: str, key: str, exc: BaseException, kind: str) -> str:
        """The outcome label of a failure (a bounded set of class names); failures that
        are not the caller's mistake are kept in ``errors`` for the dashboard."""
        if isinstance(exc, BayouError):
            outcome = type(exc).__name__
        elif isinstance(exc, Exception):
            outcome = "InternalError"
        else:
            return "cancelled"  # the caller went away; nothing failed
        if not isinstance(exc, RequestError):  # 4xx are counted, not listed
            self.errors_total += 1
            self.errors.appendleft(
                {
                    "time": time.time(),
                    "silo": self.silo_id,
                    "kind": kind,
                    "actor": f"{type_name}/{key}",
                    "method": method,
                    "error": outcome,
                    "status": exc.status if isinstance(exc, BayouError) else 500,
                    "message": str(exc)[:_MESSAGE_LIMIT],
                }
            )
        return outcome

    async def _on_view(self, view: Any, ring: Any) -> None:
        if ring.silos != self._ring:
            self._ring = ring.silos
            self.ring_changes += 1

    # -- read-outs ---------------------------------------------------------------------------

    def latency_totals(self) -> tuple[list[int], float]:
        """Bucket counts and total seconds over every handler's calls."""
        buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        seconds = 0.0
        for stats in self.calls.values():
            for i, n in enumerate(stats.buckets):
                buckets[i] += n
            seconds += stats.seconds
        return buckets, seconds


class _CallWatch:
    """The done-callback of one watched call: an object, not a closure, being cheaper."""

    __slots__ = ("deadline", "key", "method", "started", "stats", "telemetry", "type_name")

    def __init__(
        self,
        telemetry: Telemetry,
        stats: CallStats,
        type_name: str,
        method: str,
        key: str,
        deadline: float,
    ) -> None:
        self.telemetry = telemetry
        self.stats = stats
        self.type_name = type_name
        self.method = method
        self.key = key
        self.deadline = deadline
        self.started = now()

    def __call__(self, future: asyncio.Future[Any]) -> None:
        failure = _failure(future, self.deadline)
        if failure is None:
            self.stats.observe("ok", now() - self.started)
        else:
            self.telemetry.call_failed(self.type_name, self.method, self.key, self.started, failure)


class _TellWatch:
    """The done-callback of one watched tell."""

    __slots__ = ("deadline", "key", "method", "telemetry", "type_name")

    def __init__(
        self, telemetry: Telemetry, type_name: str, method: str, key: str, deadline: float
    ) -> None:
        self.telemetry = telemetry
        self.type_name = type_name
        self.method = method
        self.key = key
        self.deadline = deadline

    def __call__(self, future: asyncio.Future[Any]) -> None:
        failure = _failure(future, self.deadline)
        if failure is None:
            self.telemetry.tell_done(self.type_name, self.method)
        else:
            self.telemetry.tell_failed(self.type_name, self.method, self.key, failure)


def _failure(future: asyncio.Future[Any], deadline: float) -> BaseException | None:
    """What a watched request's caller got instead of its answer, or None if it got it:
    the future's exception, or ``CallTimeout`` if it resolved past ``deadline``."""
    if future.cancelled():
        return asyncio.CancelledError()
    failure = future.exception()
    if failure is None and future.get_loop().time() > deadline:
        return CallTimeout("no reply before the deadline; the call may still complete")
    return failure


def telemetry_of(silo: Silo) -> Telemetry:
    """The silo's telemetry, created on first use (by the HTTP app, or the first call)."""
    telemetry: Telemetry | None = silo.__dict__.get("telemetry")
    if telemetry is None:
        telemetry = silo.__dict__["telemetry"] = Telemetry(silo)
    return telemetry


# -- Prometheus --------------------------------------------------------------------------------


def registry_for(silo: Silo) -> CollectorRegistry:
    """A registry of this silo's metrics plus the process's (CPU, memory, fds, GC).

    One per silo, not prometheus_client's global registry: tests run several in a process.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SiloCollector(silo))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The registry's exposition and its content type: the Prometheus text format, or
    OpenMetrics when ``accept`` (the scraper's Accept header) asks for it."""
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type


class SiloCollector(Collector):
    """Every ``bayou_*`` metric of one silo, read from the runtime when scraped."""

    def __init__(self, silo: Silo) -> None:
        self._silo = silo

    def collect(self) -> Iterator[Metric]:
        silo = self._silo
        yield from _identity(silo)
        yield from _calls(telemetry_of(silo))
        yield from _activations(silo)
        yield from _journal(silo)
        yield from _cluster(silo)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _identity(silo: Silo) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "bayou_silo_info", "This silo: its id, cluster and bayou version.",
        labels=["silo", "cluster", "version"],
    )  # fmt: skip
    info.add_metric([silo.silo_id, silo.cluster or "", bayou.__version__], 1)
    yield info
    yield _gauge("bayou_silo_ready", "1 while the silo serves calls.", int(silo.ready))
    yield _gauge(
        "bayou_silo_lease_valid",
        "1 while the silo's membership lease lets it act as an owner.",
        int(silo.agent.lease_valid()),
    )


def _calls(telemetry: Telemetry) -> Iterator[Metric]:
    calls = CounterMetricFamily(
        "bayou_calls", "Calls by actor type, handler and outcome (ok, or the error class).",
        labels=["type", "method", "outcome"],
    )  # fmt: skip
    latency = HistogramMetricFamily(
        "bayou_call_duration_seconds",
        "Seconds from a call entering the cluster at this silo to its reply.",
        labels=["type", "method"],
    )
    for (type_name, method), stats in sorted(telemetry.calls.items()):
        for outcome, n in sorted(stats.outcomes.items()):
            calls.add_metric([type_name, method, outcome], n)
        cumulative, buckets = 0, []
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), stats.buckets, strict=True):
            cumulative += n
            buckets.append((_le(bound), cumulative))
        latency.add_metric([type_name, method], buckets, stats.seconds)
    yield calls
    yield latency
    tells = CounterMetricFamily(
        "bayou_tells", "Tells stored in an actor's inbox (ok) or refused, by type and handler.",
        labels=["type", "method", "outcome"],
    )  # fmt: skip
    for (type_name, method), outcomes in sorted(telemetry.tells.items()):
        for outcome, n in sorted(outcomes.items()):
            tells.add_metric([type_name, method, outcome], n)
    yield tells


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _activations(silo: Silo) -> Iterator[Metric]:
    catalog = silo.catalog
    activations = catalog.activations()
    by_type = GaugeMetricFamily(
        "bayou_activations", "Activations in memory, by actor type.", labels=["type"]
    )
    for type_name, n in sorted(Counter(a.spec.type_name for a in activations).items()):
        by_type.add_metric([type_name], n)
    yield by_type
    by_status = GaugeMetricFamily(
        "bayou_activations_by_status",
        "Activations by lifecycle status (loading, active, deactivating).",
        labels=["status"],
    )
    for status, n in sorted(Counter(a.status for a in activations).items()):
        by_status.add_metric([status], n)
    yield by_status
    counts = catalog.metrics
    yield _counter("bayou_activations_created", "Activations loaded.", counts["activations"])
    yield _counter(
        "bayou_passivations", "Activations passivated after idle_timeout.", counts["passivations"]
    )
    yield _counter("bayou_snapshots", "Snapshots written.", counts["snapshots"])
    yield _counter(
        "bayou_turn_reruns",
        "Turns of reentrant actors run again because another turn committed under them.",
        counts["turn_reruns"],
    )
    yield _replay_lengths(activations)
    yield _gauge(
        "bayou_journal_unsnapshotted_records",
        "Journal records of activations in memory not yet covered by a snapshot: what a "
        "crash now would replay.",
        sum(a.seq - a.snapshot_seq for a in activations),
    )


def _replay_lengths(activations: list[Activation]) -> GaugeHistogramMetricFamily:
    buckets = [0] * (len(REPLAY_BUCKETS) + 1)
    total = 0
    for activation in activations:
        buckets[bisect_left(REPLAY_BUCKETS, activation.replayed)] += 1
        total += activation.replayed
    cumulative, rows = 0, []
    for bound, n in zip((*REPLAY_BUCKETS, float("inf")), buckets, strict=True):
        cumulative += n
        rows.append((_le(bound), cumulative))
    return GaugeHistogramMetricFamily(
        "bayou_activation_replayed_records",
        "Journal records each activation in memory replayed when it loaded.",
        buckets=rows,
        gsum_value=total,
    )


def _journal(silo: Silo) -> Iterator[Metric]:
    committer = silo.committer
    # Accepted tells ride the same group commits where the committer batches them too.
    inbox = int(getattr(committer, "inbox_flushed", 0))
    yield _counter(
        "bayou_journal_appends",
        "Commits (journal records with their kv writes and inbox ack) sent to storage.",
        committer.commits_flushed,
    )
    yield _counter("bayou_inbox_writes", "Tells stored in inboxes through the group commit.", inbox)
    yield SummaryMetricFamily(
        "bayou_journal_batch_size",
        "Group commits: _count is storage transactions, _sum the writes (commits and "
        "inbox puts) they carried; rate(_sum) / rate(_count) is the mean batch size.",
        count_value=committer.batches_flushed,
        sum_value=committer.commits_flushed + inbox,
    )
    yield _gauge(
        "bayou_journal_pending_commits",
        "Commits waiting for the next group commit.",
        committer.pending,
    )
    yield _counter(
        "bayou_fenced_writes",
        "Writes storage refused because this silo no longer owned the partition.",
        silo.catalog.fenced_writes,
    )


def _cluster(silo: Silo) -> Iterator[Metric]:
    router = silo.router
    forwards = CounterMetricFamily(
        "bayou_forwards",
        "Requests forwarded over silo links: sent on to an owner, or received from a silo.",
        labels=["direction"],
    )
    forwards.add_metric(["sent"], router.forwarded)
    forwards.add_metric(["received"], router.received)
    yield forwards
    yield _counter(
        "bayou_client_link_requests",
        "Requests clients sent straight to this silo over the link (the fast path).",
        router.client_requests,
    )
    yield _counter(
        "bayou_handoffs", "Partitions handed off to another silo.", silo.rebalancer.handoffs
    )
    yield _counter(
        "bayou_partition_claims", "Partition ownership claims won.", silo.ownership.claims
    )
    yield _counter(
        "bayou_partition_takeovers",
        "Partitions claimed from a silo declared dead.",
        silo.ownership.takeovers,
    )
    agent = silo.agent
    yield _gauge(
        "bayou_partitions_owned",
        "Partitions the ring gives this silo.",
        len(agent.ring.partitions_of(silo.silo_id)),
    )
    yield _gauge(
        "bayou_membership_version",
        "Version of the membership view: grows with every status change in the cluster.",
        agent.view.version,
    )
    members = GaugeMetricFamily(
        "bayou_members", "Silos in membership, by status.", labels=["status"]
    )
    for status, n in sorted(Counter(str(m.status) for m in agent.view.members).items()):
        members.add_metric([status], n)
    yield members
    yield _counter(
        "bayou_ring_changes",
        "Changes of the set of active silos this silo saw.",
        telemetry_of(silo).ring_changes,
    )
    yield _counter(
        "bayou_silos_declared_dead",
        "Silos this silo declared dead when their lease expired.",
        agent.declared_dead,
    )
    reminders = silo.reminders
    yield _counter("bayou_reminders_fired", "Reminders delivered.", reminders.fired)
    yield _gauge(
        "bayou_reminder_lag_max_seconds",
        "Worst delay between a reminder's due time and its delivery since start.",
        reminders.lag_max,
    )
