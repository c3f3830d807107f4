"""The OpenAPI 3.1 description of a silo's HTTP API, derived from the routes it serves.

``openapi_document`` walks the silo's aiohttp route table and describes each route from the
table below (``_DESCRIBE``): calls and tells per handler, the actor-scoped routes per actor
type, the rest once. A route the silo serves that has no description here is an error
when the silo builds its app, so no route can be left out of the document. The schemas of
the bodies live in ``openapi_schemas``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from bayou import wire
from bayou.model import ActorSpec, HandlerSpec
from bayou.runtime import openapi_schemas as schemas
from bayou.runtime.app import App
from bayou.runtime.effects import MAX_CHANNEL_NAME
from bayou.runtime.http import MAX_ITEMS, MAX_OFFSET, MAX_STREAM_SECONDS
from bayou.runtime.transport import LINK_ROUTE

Operations = dict[str, dict[str, Any]]  # path -> the operation of one HTTP method there
Describer = Callable[[App], Operations]  # the operations of one route of the table

_ERRORS = {
    "400": "malformed request: body, key, name, header or query parameter (detail.field)",
    "401": "the silo requires the cluster's shared secret (Authorization: Bearer ...)",
    "404": "unknown actor type or handler (detail.known lists what exists), or no value yet",
    "408": "the request body did not arrive in full within the silo's body_timeout",
    "409": "idempotency key reused for a different call, or a call cycle",
    "413": "body larger than the silo's max_body_bytes",
    "414": "request line longer than the silo reads",
    "415": "content type neither JSON nor msgpack",
    "422": "arguments do not validate (detail lists {field, message} per problem)",
    "431": "a header longer than the silo reads, or too many headers",
    "500": "the handler raised (ActorError, detail.exception), recorded as the outcome",
    "503": "the silo cannot serve this now; retry (with the same Idempotency-Key)",
    "504": "no answer before the deadline; a call may still complete",
}
# Statuses any request can meet: malformed HTTP, and the secret when the cluster has one.
_ALWAYS = ("400", "401", "414", "431")
_BODY = ("408", "413", "415")  # reading a body
_ACTOR = ("404", "503", "504")  # reaching an actor's owner


def _errors(*codes: str, open_route: bool = False) -> dict[str, Any]:
    wanted = set(_ALWAYS) | set(codes)
    if open_route:
        wanted.discard("401")
    return {
        code: {
            "description": _ERRORS[code],
            "content": {wire.JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code in sorted(wanted)
    }


def _ok(code: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {code: {"description": description, "content": {wire.JSON: {"schema": schema}}}}


def _text(pattern_of: str, limit: int) -> dict[str, Any]:
    """A key or name: 1 to ``limit`` characters, no control characters."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": limit,
        "pattern": "^[^\\u0000-\\u001f\\u007f]+$",
        "description": pattern_of,
    }


def _path(name: str, what: str, limit: int = MAX_CHANNEL_NAME) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _text(what, limit)}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_KEY = _path("key", "the actor's key (one percent-encoded path segment)", wire.MAX_KEY_LENGTH)
_IDEMPOTENCY = {
    "name": wire.IDEMPOTENCY_KEY,
    "in": "header",
    "required": False,
    "schema": _text("makes the request exactly-once", wire.MAX_IDEMPOTENCY_KEY_LENGTH),
}
_TIMEOUT = {
    "name": wire.TIMEOUT_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "number", "exclusiveMinimum": 0},
    "description": "seconds the caller waits (clamped to the silo's max_call_timeout)",
}


def _body(schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """A JSON body, or the same as a msgpack map."""
    return {
        "required": required,
        "content": {wire.JSON: {"schema": schema}, wire.MSGPACK: {"schema": schema}},
    }


def _wait(app: App, what: str) -> dict[str, Any]:
    limit = app.settings.max_call_timeout
    return _query("wait", {"type": "number", "minimum": 0, "maximum": limit}, what)


# -- calls and tells, per handler ----------------------------------------------------------


def _handler_operation(spec: ActorSpec, handler: HandlerSpec, *, tell: bool) -> dict[str, Any]:
    body = _body(handler.args_model.model_json_schema(), required=False)
    verb = "tell" if tell else ("query" if handler.kind == "query" else "call")
    if tell:
        text = "stored in the actor's inbox; applied exactly once"
        if handler.kind == "workflow":
            text = "the workflow run is started, durably; message_id is its run id"
        ok = _ok("202", text, schemas.MESSAGE_ID)
        errors = _errors(*_BODY, *_ACTOR, "409", "422")
        params = [_KEY, _IDEMPOTENCY, _TIMEOUT]
    else:
        result = handler.result_adapter.json_schema(mode="serialization")
        reply = {"type": "object", "required": ["result"], "properties": {"result": result}}
        ok = _ok("200", "the handler's reply, once its effects are durable", reply)
        errors = _errors(*_BODY, *_ACTOR, "409", "422", "500")
        params = [_KEY, _IDEMPOTENCY, _TIMEOUT]
    return {
        "operationId": f"{spec.type_name}.{handler.name}.{verb}",
        "summary": f"{verb} {spec.type_name}.{handler.name}",
        "tags": [spec.type_name],
        "parameters": params,
        "requestBody": body,
        "responses": ok | errors,
    }


def _calls(app: App) -> Operations:
    return {
        f"/v1/actors/{spec.type_name}/{{key}}/{name}": _handler_operation(spec, h, tell=False)
        for spec in _types(app)
        for name, h in sorted(spec.handlers.items())
    }


def _tells(app: App) -> Operations:
    """Tells to exclusive handlers, and tells that start a workflow (queries and stateless
    workers take none)."""
    return {
        f"/v1/actors/{spec.type_name}/{{key}}/{name}/tell": _handler_operation(spec, h, tell=True)
        for spec in _types(app)
        if not spec.is_stateless
        for name, h in sorted(spec.handlers.items())
        if h.kind != "query"
    }


# -- the actor-scoped routes, per actor type -----------------------------------------------


def _types(app: App) -> list[ActorSpec]:
    return [spec for _, spec in sorted(app.actors.items())]


def _per_type(
    route: str,
    describe: Callable[[App, ActorSpec], dict[str, Any]],
    which: Callable[[ActorSpec], bool],
) -> Describer:
    """A route template with ``{type}``, described once per actor type that ``which`` keeps."""

    def operations(app: App) -> Operations:
        return {
            route.replace("{type}", spec.type_name): describe(app, spec)
            | {"tags": [spec.type_name]}
            for spec in _types(app)
            if which(spec)
        }

    return operations


def _stateful(spec: ActorSpec) -> bool:
    return not spec.is_stateless


def _has_workflows(spec: ActorSpec) -> bool:
    return not spec.is_stateless and any(h.kind == "workflow" for h in spec.handlers.values())


def _any(spec: ActorSpec) -> bool:
    return True


def _event(app: App, spec: ActorSpec) -> dict[str, Any]:
    return {
        "operationId": f"{spec.type_name}.event",
        "summary": "the latest value of an event",
        "parameters": [
            _KEY,
            _path("name", "the event's name"),
            _wait(app, "seconds to wait for a first value"),
        ],
        "responses": _ok("200", "the latest value", schemas.EVENT) | _errors(*_ACTOR),
    }


def _stream(app: App, spec: ActorSpec) -> dict[str, Any]:
    after = _query("after", schemas.OFFSET | {"maximum": MAX_OFFSET}, "items after this offset")
    wait = _query(
        "wait",
        {"type": "number", "minimum": 0, "maximum": MAX_STREAM_SECONDS},
        "end the response after this many seconds even if the stream is open (resume with after=)",
    )
    accept = {
        "name": "Accept",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": [wire.NDJSON, "text/event-stream"]},
        "description": "text/event-stream for server-sent events; NDJSON otherwise",
    }
    return {
        "operationId": f"{spec.type_name}.stream",
        "summary": "a stream's items as they are written, until it closes",
        "parameters": [_KEY, _path("name", "the stream's name"), after, wait, accept],
        "responses": {
            "200": {
                "description": 'NDJSON lines {"offset", "item"} then {"closed": true}; or '
                "server-sent events (id: offset, data: item; event: end)",
                "content": {
                    wire.NDJSON: {"schema": schemas.STREAM_LINE},
                    "text/event-stream": {"schema": schemas.STREAM_EVENT},
                },
            }
        }
        | _errors(*_ACTOR),
    }


def _stream_items(app: App, spec: ActorSpec) -> dict[str, Any]:
    return {
        "operationId": f"{spec.type_name}.stream_items",
        "summary": "one long-poll read of a stream",
        "parameters": [
            _KEY,
            _path("name", "the stream's name"),
            _query("after", schemas.OFFSET | {"maximum": MAX_OFFSET}, "items after this offset"),
            _query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_ITEMS},
                "at most this many items",
            ),
            _wait(app, "seconds to wait for a first item"),
        ],
        "responses": _ok("200", "the items after `after`", schemas.STREAM_ITEMS) | _errors(*_ACTOR),
    }


def _reminders(app: App, spec: ActorSpec) -> dict[str, Any]:
    listing = {
        "type": "object",
        "required": ["reminders"],
        "properties": {"reminders": {"type": "array", "items": schemas.REMINDER}},
    }
    return {
        "operationId": f"{spec.type_name}.reminders",
        "summary": "the actor's durable reminders",
        "parameters": [_KEY],
        "responses": _ok("200", "every reminder of the actor", listing) | _errors(*_ACTOR),
    }


def _reminder_set(app: App, spec: ActorSpec) -> dict[str, Any]:
    exclusive = {
        name: handler.args_model.model_json_schema()
        for name, handler in spec.handlers.items()
        if handler.kind == "exclusive"
    }
    return {
        "operationId": f"{spec.type_name}.reminder_set",
        "summary": "register (or replace) a durable reminder",
        "parameters": [_KEY, _path("name", "the reminder's name")],
        "requestBody": _body(schemas.reminder_request(exclusive), required=True),
        "responses": _ok("200", "the reminder as stored", schemas.REMINDER)
        | _errors(*_BODY, *_ACTOR, "422"),
    }


def _reminder_cancel(app: App, spec: ActorSpec) -> dict[str, Any]:
    cancelled = {
        "type": "object",
        "required": ["cancelled"],
        "properties": {"cancelled": {"type": "boolean"}},
    }
    return {
        "operationId": f"{spec.type_name}.reminder_cancel",
        "summary": "cancel a reminder",
        "parameters": [_KEY, _path("name", "the reminder's name")],
        "responses": _ok("200", "whether there was one", cancelled) | _errors(*_ACTOR),
    }


def _topic(app: App, spec: ActorSpec) -> dict[str, Any]:
    return {
        "operationId": f"{spec.type_name}.send",
        "summary": "send a value to a topic a workflow receives from",
        "parameters": [_KEY, _path("topic", "the topic's name"), _IDEMPOTENCY, _TIMEOUT],
        "requestBody": _body(schemas.TOPIC_MESSAGE, required=True),
        "responses": _ok("202", "queued durably for the workflow", schemas.MESSAGE_ID)
        | _errors(*_BODY, *_ACTOR, "409", "422"),
    }


def _workflow_runs(app: App, spec: ActorSpec) -> dict[str, Any]:
    runs = {
        "type": "object",
        "required": ["runs"],
        "properties": {"runs": {"type": "array", "items": schemas.WORKFLOW_RUN}},
    }
    return {
        "operationId": f"{spec.type_name}.workflow_runs",
        "summary": "the actor's finished workflow runs, with their lineage",
        "parameters": [_KEY],
        "responses": _ok("200", "archived runs, newest last", runs) | _errors("404", "503"),
    }


def _inspect(app: App, spec: ActorSpec) -> dict[str, Any]:
    activate = _query("activate", {"type": "boolean"}, "load the actor first")
    return {
        "operationId": f"{spec.type_name}.inspect",
        "summary": "the actor's owner, status, journal position and state",
        "parameters": [_KEY, activate],
        "responses": _ok("200", "what the owner knows", schemas.INSPECTION) | _errors(*_ACTOR),
    }


# -- the routes of the silo itself ---------------------------------------------------------


def _silo_route(path: str, name: str, summary: str, ok: dict[str, Any]) -> Describer:
    operation = {
        "operationId": f"silo.{name}",
        "summary": summary,
        "tags": ["silo"],
        "responses": ok | _errors(open_route=path in wire.OPEN_ROUTES),
    }
    return lambda app: {path: operation}


def _text_body(description: str, *media_types: str) -> dict[str, Any]:
    content = {media_type: {"schema": {"type": "string"}} for media_type in media_types}
    return {"200": {"description": description, "content": content}}


_OPENAPI = {"type": "object", "required": ["openapi", "paths"]}
_LINK = {
    "operationId": "silo.link",
    "summary": "the silo-to-silo link: a websocket of msgpack frames (see bayou/link)",
    "tags": ["silo"],
    "parameters": [_query("v", {"type": "integer"}, "the link protocol version")],
    "responses": {"101": {"description": "upgraded to the link"}} | _errors("503"),
}

_DESCRIBE: dict[tuple[str, str], Describer] = {
    ("POST", wire.CALL_ROUTE): _calls,
    ("POST", wire.TELL_ROUTE): _tells,
    ("GET", wire.EVENT_ROUTE): _per_type(wire.EVENT_ROUTE, _event, _stateful),
    ("GET", wire.STREAM_ROUTE): _per_type(wire.STREAM_ROUTE, _stream, _stateful),
    ("GET", wire.STREAM_ITEMS_ROUTE): _per_type(wire.STREAM_ITEMS_ROUTE, _stream_items, _stateful),
    ("GET", wire.REMINDERS_ROUTE): _per_type(wire.REMINDERS_ROUTE, _reminders, _stateful),
    ("PUT", wire.REMINDER_ROUTE): _per_type(wire.REMINDER_ROUTE, _reminder_set, _stateful),
    ("DELETE", wire.REMINDER_ROUTE): _per_type(wire.REMINDER_ROUTE, _reminder_cancel, _stateful),
    ("POST", wire.TOPIC_ROUTE): _per_type(wire.TOPIC_ROUTE, _topic, _has_workflows),
    ("GET", wire.WORKFLOWS_ROUTE): _per_type(wire.WORKFLOWS_ROUTE, _workflow_runs, _stateful),
    ("GET", wire.ACTOR_ROUTE): _per_type(wire.ACTOR_ROUTE, _inspect, _any),
    ("GET", "/healthz"): _silo_route(
        "/healthz", "healthz", "the event loop answers", _ok("200", "alive", schemas.STATUS)
    ),
    ("GET", "/readyz"): _silo_route(
        "/readyz",
        "readyz",
        "the silo serves calls",
        _ok("200", "ready", schemas.STATUS) | _ok("503", "starting or draining", schemas.STATUS),
    ),
    ("GET", wire.CLUSTER_ROUTE): _silo_route(
        wire.CLUSTER_ROUTE,
        "cluster",
        "members, the ring version and each partition's owner",
        _ok("200", "the cluster as this silo sees it", schemas.CLUSTER),
    ),
    ("GET", wire.OPENAPI_ROUTE): _silo_route(
        wire.OPENAPI_ROUTE, "openapi", "this document", _ok("200", "OpenAPI 3.1", _OPENAPI)
    ),
    ("GET", wire.METRICS_ROUTE): _silo_route(
        wire.METRICS_ROUTE,
        "metrics",
        "Prometheus metrics of this silo (OpenMetrics when the Accept header asks for it)",
        _text_body("the exposition", "text/plain", "application/openmetrics-text"),
    ),
    ("GET", wire.DASHBOARD_ROUTE): _silo_route(
        wire.DASHBOARD_ROUTE,
        "dashboard",
        "a live page of the whole cluster",
        _text_body("the page", "text/html"),
    ),
    ("GET", wire.DASHBOARD_DATA_ROUTE): _silo_route(
        wire.DASHBOARD_DATA_ROUTE,
        "dashboard_data",
        "the figures the dashboard polls",
        _ok("200", "the whole cluster's figures", {"type": "object"}),
    ),
    ("GET", LINK_ROUTE): lambda app: {LINK_ROUTE: _LINK},
}


class UndocumentedRoute(LookupError):
    """A route the silo serves that ``_DESCRIBE`` has no description for."""


def openapi_document(app: App, routes: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The OpenAPI document of a silo hosting ``app`` that serves ``routes`` (pairs of HTTP
    method and aiohttp route template); raises UndocumentedRoute for one it cannot describe.
    """
    served = set(routes)
    paths: dict[str, dict[str, Any]] = {}
    for method, route in sorted(served):
        # aiohttp serves HEAD beside each GET: the same operation, answered without a body.
        head = method == "HEAD" and ("GET", route) in served
        describe = _DESCRIBE.get(("GET" if head else method, route))
        if describe is None:
            raise UndocumentedRoute(
                f"{method} {route} is served but bayou/runtime/openapi.py does not describe it"
            )
        for path, operation in describe(app).items():
            paths.setdefault(path, {})[method.lower()] = _head(operation) if head else operation
    components: dict[str, Any] = {"Error": schemas.ERROR}
    return {
        "openapi": "3.1.0",
        "info": {"title": "bayou silo", "version": "1", "description": schemas.DESCRIPTION},
        "paths": _hoist_defs(dict(sorted(paths.items())), components),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"secret": {"type": "http", "scheme": "bearer"}},
        },
    }


def _hoist_defs(node: Any, components: dict[str, Any]) -> Any:
    """``node`` with the ``$defs`` of every pydantic schema in it moved to ``components``.

    OpenAPI resolves ``#/...`` references from the document's root, where ``#/$defs/Item``
    (as pydantic writes it inside an argument model's schema) leads nowhere: each one
    becomes ``#/components/schemas/<schema title>.Item``."""
    if isinstance(node, list):
        return [_hoist_defs(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("$defs"), dict):
        defs = node["$defs"]
        prefix = _free_prefix(str(node.get("title", "schema")), defs, components)
        refs = {f"#/$defs/{name}": f"#/components/schemas/{prefix}.{name}" for name in defs}
        for name, definition in defs.items():
            components[f"{prefix}.{name}"] = _hoist_defs(_repoint(definition, refs), components)
        node = _repoint({k: v for k, v in node.items() if k != "$defs"}, refs)
    return {key: _hoist_defs(value, components) for key, value in node.items()}


def _free_prefix(title: str, defs: dict[str, Any], components: dict[str, Any]) -> str:
    """``title``, or ``title`` with a number, such that no definition lands on another."""
    prefix, n = title, 1
    while any(components.get(f"{prefix}.{name}", d) != d for name, d in defs.items()):
        n += 1
        prefix = f"{title}_{n}"
    return prefix


def _repoint(node: Any, refs: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_repoint(item, refs) for item in node]
    if isinstance(node, dict):
        return {
            key: refs.get(value, value)
            if key == "$ref" and isinstance(value, str)
            else _repoint(value, refs)
            for key, value in node.items()
        }
    return node


def _head(operation: dict[str, Any]) -> dict[str, Any]:
    head = copy.deepcopy(operation)
    head["operationId"] += ".head"
    for response in head["responses"].values():
        response.pop("content", None)
    return head
