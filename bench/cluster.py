"""Reading silos' cluster views over HTTP: who is active, who owns which actor, settled yet."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from bayou.wire import partition_of


def view(url: str) -> dict[str, Any]:
    """``GET /v1/cluster`` of one silo."""
    with urllib.request.urlopen(url + "/v1/cluster", timeout=2.0) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def settled(urls: list[str], active: int) -> bool:
    """Every silo routes by the same ring version with ``active`` active members."""
    try:
        views = [view(url) for url in urls]
    except OSError:
        return False
    versions = {v["ring_version"] for v in views}
    counts = {sum(m["status"] == "active" for m in v["members"]) for v in views}
    return len(versions) == 1 and counts == {active}


def wait_settled(urls: list[str], active: int, timeout: float = 30.0) -> float:
    """Seconds until ``settled``; TimeoutError past ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if settled(urls, active):
            return time.monotonic() - start
        time.sleep(0.05)
    raise TimeoutError(f"silos {urls} did not settle on {active} active in {timeout}s")


def keys_owned_by(url: str, owner_url: str, count: int, prefix: str) -> list[str]:
    """``count`` counter keys whose partition the silo at ``owner_url`` owns."""
    body = view(url)
    members = body["members"]
    target = next(i for i, m in enumerate(members) if m["address"] == owner_url)
    owners = body["owners"]
    partitions = int(body["partitions"])
    keys: list[str] = []
    i = 0
    while len(keys) < count:
        key = f"{prefix}{i}"
        if owners[partition_of("counter", key, partitions)] == target:
            keys.append(key)
        i += 1
    return keys


def dead_seen(url: str, silo_address: str) -> bool:
    """The silo at ``url`` no longer counts ``silo_address`` as active."""
    try:
        body = view(url)
    except OSError:
        return False
    return not any(
        m["address"] == silo_address and m["status"] == "active" for m in body["members"]
    )
