"""Operating a running cluster: /metrics scraped after known traffic, the dashboard's data,
``GET /v1/actors/{type}/{key}`` and ``bayou inspect`` routed to the owner, and the JSON logs
of real silo processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bayou import Client
from tests.cluster.cluster import Cluster
from tests.cluster.harness import ROOT, SiloProcess
from tests.redis_server import RedisServer

pytestmark = pytest.mark.cluster

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    async with session.post(url, json=body) as resp:
        await resp.read()
        return resp.status


async def test_metrics_of_a_silo_move_with_known_traffic(silo: SiloProcess) -> None:
    actors = silo.url + "/v1/actors"
    async with aiohttp.ClientSession() as session:
        before = await scrape(session, silo.url)
        for i in range(5):
            assert await post(session, f"{actors}/counter/m{i % 2}/add", {"n": 1}) == 200
        assert await post(session, f"{actors}/counter/m0/add", {"n": "x"}) == 422
        for _ in range(2):
            assert await post(session, f"{actors}/probe/p/boom", {"message": "m"}) == 500
        assert await post(session, f"{actors}/counter/m2/add/tell", {"n": 1}) == 202
        assert await post(session, f"{actors}/nosuch/k/add", {}) == 404  # not labelled
        after = await scrape(session, silo.url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    add = {"type": "counter", "method": "add"}
    assert moved("bayou_calls_total", **add, outcome="ok") == 5
    assert moved("bayou_calls_total", **add, outcome="InvalidArguments") == 1
    assert moved("bayou_calls_total", type="probe", method="boom", outcome="ActorError") == 2
    assert moved("bayou_tells_total", **add, outcome="ok") == 1
    assert moved("bayou_call_duration_seconds_count", **add) == 6
    assert value(after, "bayou_call_duration_seconds_bucket", **add, le="+Inf") == 6
    assert not any(labels and dict(labels).get("type") == "nosuch" for _, labels in after)
    assert value(after, "bayou_activations", type="counter") >= 2
    assert value(after, "bayou_activations", type="probe") == 1
    assert moved("bayou_activations_created_total") >= 3
    assert moved("bayou_journal_appends_total") >= 7  # 5 adds and 2 recorded failures
    assert moved("bayou_journal_batch_size_count") >= 1
    assert value(after, "bayou_silo_ready") == 1
    assert value(after, "bayou_members", status="active") == 1
    assert value(after, "process_cpu_seconds_total") > 0


@pytest.fixture
async def cluster(
    tmp_path: Path, redis_server: RedisServer, cluster_name: str
) -> AsyncIterator[Cluster]:
    nodes = Cluster(tmp_path, redis_server, cluster_name)
    try:
        yield nodes
    finally:
        await nodes.close()


async def test_a_cluster_seen_through_metrics_dashboard_inspect_and_logs(cluster: Cluster) -> None:
    await cluster.start(3)
    view = await cluster.view()
    by_id = {m["id"]: m for m in view["members"]}
    urls = {silo.url: silo for silo in cluster.silos}
    owner_id = cluster.owner_of(view, "counter", "dash")
    owner_url = by_id[owner_id]["address"]
    other = next(url for url in urls if url != owner_url)
    async with aiohttp.ClientSession() as session:
        before = await scrape(session, other)
        # Through a silo that does not own the actor: forwarded, counted where it entered.
        async with Client(other, routing=False) as client:
            for _ in range(4):
                await client.ref("counter", "dash").add(n=2)
            await client.ref("probe", "loud").note(message="hello")
        after = await scrape(session, other)
        add = {"type": "counter", "method": "add", "outcome": "ok"}
        assert (
            value(after, "bayou_calls_total", **add) - value(before, "bayou_calls_total", **add)
            == 4
        )
        sent = value(after, "bayou_forwards_total", direction="sent")
        assert sent - value(before, "bayou_forwards_total", direction="sent") >= 4
        assert value(after, "bayou_members", status="active") == 3
        assert value(after, "bayou_partitions_owned") == by_id[other_id(by_id, other)]["partitions"]

        # The dashboard's data, from every silo alike: three active silos with their figures.
        for url in urls:
            async with session.get(url + "/v1/dashboard.json") as resp:
                assert resp.status == 200
                data = await resp.json()
            members = {m["id"]: m for m in data["members"]}
            assert set(members) == set(by_id)
            assert all(m["status"] == "active" and "stats" in m for m in members.values())
            assert sum(m["partitions"] for m in members.values()) == data["partitions"]
            assert members[other_id(by_id, other)]["stats"]["calls"]["by_type"]["counter"] >= 4
            assert members[owner_id]["stats"]["activations"]["counter"] >= 1
        async with session.get(other + "/dashboard") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"

        # Introspection from a silo that does not own the actor: answered by the owner.
        async with session.get(other + "/v1/actors/counter/dash") as resp:
            assert resp.status == 200
            actor = await resp.json()
        assert actor["owner"] == {"silo": owner_id, "address": owner_url}
        assert actor["status"] == "active"
        assert actor["state"] == {"value": 8}
        assert actor["seq"] == 4
        async with session.get(other + "/v1/actors/nosuch/k") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["type"] == "UnknownActorType"

    # The command line: the same document, for a person and as JSON.
    command = [sys.executable, "-m", "bayou", "inspect", "counter/dash", "--url", other]
    shown = await run(command)
    assert f"owner      {owner_id} at {owner_url}" in shown
    assert '"value": 8' in shown
    assert json.loads(await run([*command, "--json"]))["seq"] == 4

    # Logs: JSON lines (the log is a file, not a terminal), each naming its silo; the note
    # logged inside the turn names the actor and the invocation.
    loud_owner = cluster.owner_of(view, "probe", "loud")
    prober = urls[by_id[loud_owner]["address"]]
    lines = prober.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and all(r["silo"] == loud_owner for r in records)
    note = next(r for r in records if r["message"] == "note: hello")
    assert note["actor"] == "probe/loud"
    assert note["invocation"]
    assert note["level"] == "WARNING"
    assert note["logger"] == "tests.probe"


def other_id(by_id: dict[str, Any], url: str) -> str:
    return next(silo for silo, member in by_id.items() if member["address"] == url)


async def run(command: list[str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()
