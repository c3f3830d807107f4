"""The HTTP contract between clients and silos: routes, headers, media types, limits.

Imported by both ``bayou.client`` and ``bayou.runtime``; it depends on nothing else of bayou
but the codec, so the client stays importable without the runtime.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

from bayou import codec

API_PREFIX: Final = "/v1"
CALL_ROUTE: Final = "/v1/actors/{type}/{key}/{method}"
TELL_ROUTE: Final = "/v1/actors/{type}/{key}/{method}/tell"
EVENT_ROUTE: Final = "/v1/actors/{type}/{key}/events/{name}"
STREAM_ROUTE: Final = "/v1/actors/{type}/{key}/streams/{name}"
STREAM_ITEMS_ROUTE: Final = "/v1/actors/{type}/{key}/streams/{name}/items"
REMINDERS_ROUTE: Final = "/v1/actors/{type}/{key}/reminders"
REMINDER_ROUTE: Final = "/v1/actors/{type}/{key}/reminders/{name}"
TOPIC_ROUTE: Final = "/v1/actors/{type}/{key}/topics/{topic}"
WORKFLOWS_ROUTE: Final = "/v1/actors/{type}/{key}/workflows"
CLUSTER_ROUTE: Final = "/v1/cluster"
OPENAPI_ROUTE: Final = "/v1/openapi.json"
# Operations: introspection of one actor (GET), Prometheus metrics, the dashboard and its data.
ACTOR_ROUTE: Final = "/v1/actors/{type}/{key}"
METRICS_ROUTE: Final = "/metrics"
DASHBOARD_ROUTE: Final = "/dashboard"
DASHBOARD_DATA_ROUTE: Final = "/v1/dashboard.json"

IDEMPOTENCY_KEY: Final = "Idempotency-Key"
AUTHORIZATION: Final = "Authorization"  # "Bearer <shared secret>" when the cluster has one
# Routes a load balancer or kubelet probes without the secret.
OPEN_ROUTES: Final = frozenset({"/healthz", "/readyz"})


def bearer(secret: str) -> dict[str, str]:
    """The header that carries the cluster's shared secret."""
    return {AUTHORIZATION: f"Bearer {secret}"}


# Seconds the caller is prepared to wait for a reply; the silo answers 504 past it.
TIMEOUT_HEADER: Final = "Bayou-Timeout"
# The membership version the answering silo routes by; a client refreshes its ring on change.
RING_VERSION_HEADER: Final = "Bayou-Ring-Version"

JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
NDJSON: Final = "application/x-ndjson"

MAX_KEY_LENGTH: Final = 256
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 256


def partition_of(actor_type: str, key: str, partitions: int) -> int:
    """The partition of an actor: a stable hash of ``(type, key)`` modulo ``partitions``.

    Part of the wire contract because silos and smart clients must agree on it: stable
    across processes, machines and Python versions (unlike ``hash()``).
    """
    digest = hashlib.blake2b(actor_type.encode() + b"\x00" + key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


_BAD_KEY_CHAR = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def key_problem(key: str, what: str = "key") -> str | None:
    """Why ``key`` is not a valid actor key or idempotency key, or None if it is fine."""
    if not key:
        return f"{what} must not be empty"
    limit = MAX_KEY_LENGTH if what == "key" else MAX_IDEMPOTENCY_KEY_LENGTH
    if len(key) > limit:
        return f"{what} is longer than {limit} characters"
    bad = _BAD_KEY_CHAR.search(key)
    if bad is None:
        return None
    if bad.group() >= "\ud800":
        # What HTTP header and path bytes that are not UTF-8 decode to; no store takes them.
        return f"{what} is not valid UTF-8 text"
    return f"{what} contains control characters"


def encode_body(value: Any, media_type: str) -> bytes:
    """Serialize a request or response body in the given media type."""
    if media_type == MSGPACK:
        return codec.pack(value)
    return _JSON_ENCODER.encode(value).encode()


# Made once: json.dumps and json.loads with options build a new encoder or decoder per call,
# which costs more than encoding a small body.
_JSON_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


MAX_NESTING: Final = 64  # containers within containers an argument may have
_FLAT: Final = frozenset({str, int, float, bool, type(None), bytes})


def decode_body(data: bytes, media_type: str) -> Any:
    """Parse a body; raises ValueError on malformed input (including NaN and Infinity,
    which are not JSON, and nesting deeper than ``MAX_NESTING``)."""
    if media_type == MSGPACK:
        try:
            value = codec.unpack(data)
        except Exception as exc:  # msgpack raises several unrelated types
            raise ValueError(f"malformed msgpack: {exc}") from None
    else:
        # What json.loads(data) does with bytes, without a decoder per call.
        text = (
            data
            if isinstance(data, str)
            else data.decode(json.detect_encoding(data), "surrogatepass")
        )
        value = _JSON_DECODER.decode(text)
    check_nesting(value)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_JSON_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant)


def check_nesting(value: Any, limit: int = MAX_NESTING) -> None:
    """ValueError if ``value`` nests containers deeper than ``limit`` (checked without
    recursion, so a hostile body cannot exhaust the stack)."""
    if type(value) is dict and all(type(v) in _FLAT for v in value.values()):
        return  # the common case: named arguments that are all scalars
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= limit:
            raise ValueError(f"arguments nest deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)
