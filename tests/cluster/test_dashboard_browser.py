"""The dashboard in a real headless Chromium against a running 3-silo cluster: the page
loads, shows the three silos, updates as calls arrive, lists a failure, and fetches
nothing but the silo's own URLs (it must work offline).

Needs Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) and
the ``playwright`` package (a dev extra), which drives that browser: no browser is
downloaded. Without either the test is skipped, saying which is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bayou import ActorError, Client
from tests.cluster.cluster import Cluster
from tests.redis_server import RedisServer

CHROMIUM = next(
    (
        path
        for path in (
            shutil.which("chromium"),
            shutil.which("chromium-browser"),
            "/usr/bin/chromium",
        )
        if path and os.access(path, os.X_OK)
    ),
    None,
)
if CHROMIUM is None:
    pytest.skip(
        "the dashboard test needs Chromium: apt-get install chromium", allow_module_level=True
    )
playwright = pytest.importorskip(
    "playwright.async_api", reason="the dashboard test needs playwright: pip install -e '.[dev]'"
)

pytestmark = pytest.mark.cluster

# Flags that let Chromium run headless as root in a container without reaching out.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CALLS_SHOWN = "[...document.querySelectorAll('#members td.calls')]" \
    ".reduce((sum, td) => sum + (parseInt(td.textContent.replace(/,/g, '')) || 0), 0)"  # fmt: skip


@pytest.fixture
async def cluster(
    tmp_path: Path, redis_server: RedisServer, cluster_name: str
) -> AsyncIterator[Cluster]:
    nodes = Cluster(tmp_path, redis_server, cluster_name)
    try:
        await nodes.start(3)
        yield nodes
    finally:
        await nodes.close()


async def test_the_dashboard_shows_the_cluster_live(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.urls[1]
    silo_ids = [m["id"] for m in (await cluster.view())["members"]]
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh profile: --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = browser.pages[0] if browser.pages else await browser.new_page()
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            problems: list[str] = []  # script errors, CSP violations, failed loads
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on(
                "console",
                lambda msg: problems.append(msg.text) if msg.type == "error" else None,
            )
            await page.goto(url + "/dashboard")
            await until(
                page,
                "document.querySelectorAll('#members tbody tr[data-status=active]').length === 3",
            )
            rows = page.locator("#members tbody tr")
            shown = {await rows.nth(i).get_attribute("data-silo") for i in range(3)}
            assert shown == set(silo_ids)
            assert await page.locator("#t-silos").text_content() == "3"
            before = int(await page.evaluate(CALLS_SHOWN))

            # Traffic: the call counts, the rate and the activation table follow it.
            async with Client(cluster.urls) as client:
                await asyncio.gather(*(client.ref("counter", f"d{i}").add(n=1) for i in range(60)))
                with pytest.raises(ActorError):
                    await client.ref("probe", "dash").boom(message="shown on the dashboard")
            await until(page, f"{CALLS_SHOWN} >= {before + 61}")
            await until(
                page, "document.querySelector('#errors tbody').textContent.includes('ActorError')"
            )
            counter_row = page.locator("#types tbody tr[data-type=counter]")
            assert "60" in (await counter_row.text_content() or "")
            # Under steady load the rate and the latency percentiles show figures.
            async with load(cluster.urls):
                await until(page, "parseFloat(document.getElementById('t-rate').textContent) > 0")
                await until(page, "document.getElementById('t-p99').textContent.includes('s')")
                await page.wait_for_timeout(2000)  # a few more polls, for a chart worth a look
                await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            await browser.close()
    assert not problems, problems
    assert requested, "the page fetched nothing"
    elsewhere = [r for r in requested if not r.startswith(url + "/")]
    assert not elsewhere, f"the dashboard fetched from elsewhere: {elsewhere}"
    assert sum(r.endswith("/v1/dashboard.json") for r in requested) >= 3  # it polls


async def until(page: Any, expression: str, timeout: float = 15.0) -> None:
    """Poll ``expression`` in the page until it is true. (Not ``wait_for_function``: that
    compiles its predicate with eval, which the dashboard's Content-Security-Policy forbids,
    as it should.)"""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never showed {expression}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def load(urls: list[str], calls: int = 20_000) -> AsyncIterator[None]:
    """Calls in the background, a few at a time, until the block ends (at most ``calls``)."""
    stop = asyncio.Event()

    async def caller(client: Client, worker: int) -> None:
        for i in range(calls // 4):
            if stop.is_set():
                return
            await client.ref("counter", f"load{worker}-{i % 50}").add(n=1)

    async with Client(urls) as client:
        workers = [asyncio.ensure_future(caller(client, w)) for w in range(4)]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*workers)
