"""Fuzz the OpenAPI document a real silo serves with schemathesis: valid and invalid
requests for every operation it documents. Every answer must be documented for its
operation (status, content type, body schema), a failure must carry the error shape, and
there must be no 500 and no dropped connection; afterwards the silo still serves and an
acknowledged value is intact."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bayou.runtime.http import OPENAPI, build_http_app, served_routes
from bayou.runtime.openapi import UndocumentedRoute, openapi_document
from bayou.runtime.silo import Silo
from bayou.storage.memory import MemoryStorage
from tests.cluster.fuzz_app import app as fuzz_app
from tests.cluster.harness import SiloProcess

pytestmark = pytest.mark.cluster

# The longest any one request may wait on the silo: long polls and streams are cut short so
# that the fuzzing stays quick; how they wait is not what it is looking at.
MAX_WAIT = 0.01


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiloProcess]:
    proc = SiloProcess(
        tmp_path_factory.mktemp("fuzz") / "silo.db", app="tests.cluster.fuzz_app:app"
    )
    asyncio.run(proc.start())
    try:
        reply = requests.post(
            proc.url + "/v1/actors/counter/sentinel/add", json={"n": 7}, timeout=10
        )
        assert reply.json() == {"result": 7}
        note = requests.post(f"{proc.url}/v1/actors/typed/{FED}/note", json={"text": "hi"},
                             timeout=10)  # fmt: skip
        assert note.json() == {"result": 1}
        yield proc
        # The silo survived the fuzzing, and what was acknowledged before it is intact.
        assert proc.proc is not None and proc.proc.poll() is None, proc.log()
        after = requests.post(proc.url + "/v1/actors/counter/sentinel/get", timeout=10)
        assert after.json() == {"result": 7}
        assert "Traceback" not in proc.log(), proc.log()
    finally:
        asyncio.run(proc.kill())


@schemathesis.serializer("application/msgpack")
def _msgpack(ctx: Any, value: Any) -> bytes:
    """Bodies the document offers as msgpack are fuzzed as msgpack too."""
    data: bytes = msgpack.packb(value, default=str)
    return data


def bound_waits(case: Any) -> None:
    """See MAX_WAIT. A wait outside what the document allows is left alone: the silo must
    refuse it, and at once. (In the test, not a schemathesis hook: hooks do not see the
    cases of every phase.)"""
    for param in case.operation.query:
        if param.name != "wait":
            continue
        query = case.query if isinstance(case.query, dict) else {}
        limit = param.definition.get("schema", {}).get("maximum", MAX_WAIT)
        seconds = _seconds(query.get("wait", limit))
        if seconds is not None and MAX_WAIT < seconds <= limit:
            query["wait"] = MAX_WAIT
        case.query = query


FED = "fuzzed"  # typed/fuzzed has an event "last" and items in stream "notes" (fixture)
_reads = itertools.count()


def steer(case: Any) -> None:
    """Every other read of a typed actor's event or stream names one that exists, so that
    the fuzzer also gets past "nothing there yet" (which ones is deterministic, as the
    examples are)."""
    path, params = case.operation.path, case.path_parameters
    if not path.startswith("/v1/actors/typed/") or not params or "name" not in params:
        return
    if case.operation.method.upper() not in ("GET", "HEAD") or next(_reads) % 2:
        return
    params["key"] = FED
    params["name"] = "last" if "/events/" in path else "notes"


def _seconds(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# The document is built at collection time, the way a silo builds it (from the routes its
# app registers, for the same actor types), in this process: schemathesis' lazy,
# fixture-based loading does not work with pytest 9. test_the_fuzzed_document_is_the_one_served
# checks that the silo serves the same.
WEB_APP = build_http_app(Silo(fuzz_app, MemoryStorage()))
DOCUMENT = WEB_APP[OPENAPI]
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


def test_the_fuzzed_document_is_the_one_served(fuzzed: SiloProcess) -> None:
    served = requests.get(fuzzed.url + "/v1/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def _shape(path: str) -> str:
    """A path with its actor type, handler and every parameter blanked: the shape of the
    aiohttp route template it was documented from."""
    parts = path.split("/")
    spec = fuzz_app.actors.get(parts[3]) if parts[1:3] == ["v1", "actors"] else None
    if spec is not None:
        parts[3] = "{}"
        if len(parts) > 5 and parts[5] in spec.handlers:  # a call or a tell
            parts[5] = "{}"
    return "/".join("{}" if p.startswith("{") else p for p in parts)


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), _shape(path))
        for path, item in DOCUMENT["paths"].items()
        for method in item
    }


def test_the_document_describes_every_route() -> None:
    """Every route the silo's app registers is in the document, and nothing else is."""
    served = {(method, _shape(route)) for method, route in served_routes(WEB_APP)}
    assert served - documented_operations() == set()
    assert documented_operations() - served == set()


def test_the_document_describes_every_handler() -> None:
    paths = DOCUMENT["paths"]
    for type_name, spec in fuzz_app.actors.items():
        for name, handler in spec.handlers.items():
            base = f"/v1/actors/{type_name}/{{key}}/{name}"
            assert "post" in paths[base], base
            takes_tells = handler.kind != "query" and not spec.is_stateless
            assert (f"{base}/tell" in paths) == takes_tells, base
    assert paths["/v1/actors/typed/{key}/tally/tell"]["post"]["responses"]["202"]  # a workflow
    assert "/v1/actors/typed/{key}/topics/{topic}" in paths  # it has a workflow to receive
    assert "/v1/actors/counter/{key}/topics/{topic}" not in paths  # it has none
    assert "/v1/actors/echo/{key}/reminders" not in paths  # stateless: no inbox
    body = paths["/v1/actors/typed/{key}/reminders/{name}"]["put"]["requestBody"]
    method = body["content"]["application/json"]["schema"]["properties"]["method"]
    assert method["enum"] == ["add", "annotate", "bounded", "note", "stock"]


def test_every_operation_documents_its_failures_in_the_error_shape() -> None:
    error = {"$ref": "#/components/schemas/Error"}
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            failures = {code for code in responses if code >= "400"} - {"503"}
            assert {"400", "414", "431"} <= failures, (method, path)
            for code in failures:
                content = responses[code].get("content")
                assert method == "head" or content == {"application/json": {"schema": error}}


def test_every_reference_resolves_from_the_document_root() -> None:
    """pydantic nests $defs in each model's schema; OpenAPI resolves refs from the root."""
    refs, stack = [], [DOCUMENT["paths"]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            assert "$defs" not in node, node
            refs += [node["$ref"]] if "$ref" in node else []
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert "#/components/schemas/Typed.stock.args.Item" in refs
    for ref in refs:
        assert ref.removeprefix("#/components/schemas/") in DOCUMENT["components"]["schemas"]


def test_a_route_without_a_description_stops_the_silo_from_building_its_app() -> None:
    async def forgotten(request: web.Request) -> web.Response:
        return web.Response()

    web_app = build_http_app(Silo(fuzz_app, MemoryStorage()))
    web_app.router.add_get("/v1/forgotten", forgotten)
    with pytest.raises(UndocumentedRoute, match="GET /v1/forgotten"):
        openapi_document(fuzz_app, served_routes(web_app))


def check_error_shape(response: schemathesis.Response) -> None:
    assert response.status_code != 500, response.text[:500]
    if response.status_code >= 400 and response.request.method != "HEAD":
        body = json.loads(response.content)  # also when the document promises JSON
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"type", "message", "detail"}, body
        assert "Traceback" not in body["error"]["message"]


def check_ndjson(response: schemathesis.Response) -> None:
    """schemathesis checks server-sent events one by one, but not NDJSON lines."""
    content_type = response.headers.get("content-type", [""])[0]  # lowercase names, lists
    if not content_type.startswith("application/x-ndjson"):
        return
    lines = [json.loads(line) for line in response.content.splitlines()]
    for i, line in enumerate(lines):
        if "closed" in line:
            assert (line, i) == ({"closed": True}, len(lines) - 1), lines
        else:
            assert set(line) == {"offset", "item"} and isinstance(line["offset"], int), line


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples every run: CI must not flake on a new one
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented(fuzzed: SiloProcess, case: Any) -> None:
    bound_waits(case)
    steer(case)
    response = case.call(base_url=fuzzed.url, timeout=30)  # a dropped connection raises here
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    check_error_shape(response)
    check_ndjson(response)
