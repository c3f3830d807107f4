"""Scaling the silo Deployment the way Kubernetes does it, under load.

Silos start with exactly the environment the manifests and the image give a pod (see
``tests/cluster/k8s_like.py`` for what is simulated and the few substitutions one machine
forces); Redis runs the StatefulSet's command and configuration with a password from the
"Secret". Clients reach the cluster through the ``bayou`` Service, which holds only pods
whose readiness probe passes, and then call each actor's owner directly, as the Python
client does inside a cluster.

The Deployment goes 1 -> 4 -> 2 -> 3 replicas while clients keep adding to counters.
Scaling down deletes pods the Kubernetes way: endpoints first, the preStop sleep, SIGTERM,
and SIGKILL if the grace period runs out — which must never happen.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.cluster import Load, witness_violations
from tests.cluster.k8s_like import KubeLike, Pod

pytestmark = pytest.mark.cluster

# The one deliberate change to the pods' environment: the test app, whose `witness` actor
# checks single activation with a lock of its own (BAYOU_WITNESS_REDIS, added by the
# harness, tells it where Redis is). Everything else is the manifests'.
OVERRIDES = {"BAYOU_APP": "tests.cluster.apps:app"}
# What one machine forces on a pod; nothing else may differ from the manifests.
SUBSTITUTED = {"BAYOU_HOST", "BAYOU_PORT", "BAYOU_REDIS_URL", "BAYOU_APP", "BAYOU_WITNESS_REDIS"}


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[KubeLike]:
    cluster = KubeLike(tmp_path, overrides=OVERRIDES)
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.close()


def check_join(pod: Pod) -> str:
    """Readiness gated the pod until it had joined: /readyz said 503 while membership had
    it `joining`, and never 200 unless membership already had it `active`."""
    samples = pod.join
    assert samples and samples[-1].readyz == 200, f"{pod.name} never became ready"
    # Read after the answer, so each sample's status is at least as new as its readyz.
    early = [s for s in samples if s.readyz == 200 and s.member != "active"]
    assert not early, f"{pod.name} was ready before it was active: {early}"
    gated = [s for s in samples if s.readyz == 503 and s.member == "joining"]
    assert gated, f"{pod.name}: /readyz never seen refusing while joining: {samples}"
    # The kubelet's probe agrees: the pod was in no endpoints before it was active.
    first_ready = min(t for t, status in pod.readiness_log if status == 200)
    assert pod.ready_since is not None and pod.ready_since >= first_ready
    assert first_ready >= min(s.at for s in gated)
    window = (samples[-1].at - min(s.at for s in gated)) * 1000
    return f"{pod.name}: /readyz 503 while joining for {window:.0f} ms ({len(gated)} looks)"


def check_shutdown(pod: Pod, grace: float) -> str:
    assert not pod.killed, f"{pod.name} outlived its grace period and was SIGKILLed:\n{pod.log()}"
    assert pod.exit_code == 0, f"{pod.name} exited {pod.exit_code}:\n{pod.log()}"
    assert pod.shutdown_seconds is not None and pod.shutdown_seconds < grace
    return f"{pod.name}: deleted, exited 0 after {pod.shutdown_seconds:.1f}s (grace {grace:.0f}s)"


async def test_scale_1_4_2_3_under_load_like_kubernetes(kube: KubeLike) -> None:
    began = time.monotonic()
    template = kube.template
    report: list[str] = []

    (first,) = await kube.scale(1)
    # Exactly the manifests' contract, but for what one machine forces.
    assert set(first.substituted) == SUBSTITUTED, first.substituted
    assert first.env["POD_IP"] == "127.0.0.1" and first.env["POD_NAME"] == first.name
    assert first.env["BAYOU_REDIS_URL"].startswith(f"redis://:{kube.redis.password}@127.0.0.1:")
    await kube.wait_settled()

    # Clients know only the Service, like an application in the cluster.
    load = Load([kube.service.url], actors=120, clients=6, deadline=50.0)
    load.start()
    await load.wait_acked(200)

    failures: dict[int, Tally[str]] = {}
    for replicas in (4, 2, 3):
        before, seen = load.total_acked, Tally(load.failures)
        changed = await kube.scale(replicas)
        await kube.wait_settled()
        await load.wait_acked(before + 300)
        failures[replicas] = load.failures - seen
        report.append(
            f"scaled to {replicas} ({', '.join(p.name for p in changed)}): "
            f"failures past the client's retries {dict(failures[replicas])}"
        )

    await load.finish()
    await load.check(kube.service.url)
    assert await witness_violations(kube.redis.url) == 0

    pods = kube.pods + kube.deleted
    assert len(pods) == 1 + 3 + 1 and len(kube.pods) == 3 and len(kube.deleted) == 2
    for pod in pods:
        report.append(check_join(pod))
    for pod in kube.deleted:
        report.append(check_shutdown(pod, template.grace))
    # Deleted silos left membership cleanly; nobody had to declare them dead.
    statuses = await kube.member_statuses()
    assert all(statuses[p.name] == "dead" for p in kube.deleted), statuses
    assert all(statuses[p.name] == "active" for p in kube.pods), statuses
    views = await kube.views()
    assert sum(v["stats"]["declared_dead"] for v in views) == 0
    assert sum(v["stats"]["fenced_writes"] for v in views) == 0
    # The kubelet never had reason to restart a container.
    assert not [f for p in pods for f in p.probe_failures]
    # The Service only ever held ready pods, and it always had one.
    assert kube.service.accepted > 0 and kube.service.refused == 0
    # Growing the cluster cost clients nothing: no call failed past the client's own
    # retries while new silos started, joined and took partitions over.
    assert not failures[4] and not failures[3], failures
    # Shrinking it may cost a retryable 503 past them (and never a lost or doubled add,
    # checked above): a silo that drained and exited can still be the owner in a peer's
    # ring for up to one heartbeat, and that peer answers "owner ... is unreachable"
    # instead of routing again. Never a connection failure or a timeout, which is what
    # a Service sending calls to a pod that is not ready, or gone, would produce.
    assert set(failures[2]) <= {"Unavailable"}, failures

    elapsed = time.monotonic() - began
    report.append(
        f"{load.total_acked} adds acknowledged, each applied once; {elapsed:.1f}s in all; "
        f"service connections {kube.service.accepted}"
    )
    print("\n" + "\n".join(report))
