"""JSON Schemas of the bodies the silo's HTTP API sends and takes, for ``openapi``.

They describe what the handlers in ``http.py`` and ``http_ops.py`` produce; the OpenAPI fuzz
test (tests/cluster/test_openapi_fuzz.py) checks every answer against them.
"""

from __future__ import annotations

from typing import Any

from bayou.runtime.reminders import MIN_PERIOD

DESCRIPTION = (
    "Every silo serves this API. Bodies are JSON objects (or msgpack maps, with Content-Type: "
    "application/msgpack); Accept: application/msgpack asks for a msgpack reply. Every "
    'failure is {"error": {"type", "message", "detail"}} with a 4xx or 5xx status.'
)

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "detail"],
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string", "description": "the bayou.errors class name"},
                "message": {"type": "string", "minLength": 1},
                "detail": {"description": "e.g. {field}, {known}, {limit}, or null"},
            },
        }
    },
}

MESSAGE_ID = {
    "type": "object",
    "required": ["message_id"],
    "properties": {"message_id": {"type": "string", "minLength": 1}},
}
EVENT = {"type": "object", "required": ["value"], "properties": {"value": {}}}
OFFSET = {"type": "integer", "minimum": -1}
STREAM_ITEMS = {
    "type": "object",
    "required": ["items", "closed", "next"],
    "properties": {
        "items": {
            "type": "array",
            "items": {"type": "array", "minItems": 2, "maxItems": 2},
            "description": "[offset, item] pairs",
        },
        "closed": {"type": "boolean"},
        "next": {"type": "integer", "minimum": 0},
    },
}
# The streaming route's answer, described one NDJSON line or one server-sent event at a time.
STREAM_LINE = {
    "type": "object",
    "oneOf": [
        {"required": ["offset", "item"], "properties": {"offset": {"type": "integer"}}},
        {"required": ["closed"], "properties": {"closed": {"const": True}}},
    ],
}
STREAM_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "the item's offset"},
        "event": {"enum": ["message", "end"]},
        "data": {"type": "string", "description": "the item, as JSON"},
    },
}
REMINDER = {
    "type": "object",
    "required": ["name", "due", "period", "method", "args"],
    "properties": {
        "name": {"type": "string"},
        "due": {"type": "number", "description": "seconds since the epoch"},
        "period": {"type": ["number", "null"]},
        "method": {"type": "string"},
        "args": {"type": "object"},
    },
}


def reminder_request(args_by_method: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``PUT .../reminders/{name}``: which exclusive handler to run, with which arguments
    (the handler's own schema), and when: exactly one of ``due_in`` and ``due_at``."""
    body: dict[str, Any] = {
        "type": "object",
        "required": ["method"],
        "additionalProperties": False,
        "properties": {
            "method": {"type": "string", "enum": sorted(args_by_method)}
            if args_by_method
            else {"type": "string"},
            "args": {"type": "object"},
            "due_in": {"type": "number", "minimum": 0, "description": "seconds from now"},
            "due_at": {"type": "number", "description": "seconds since the epoch"},
            "period": {"type": "number", "minimum": MIN_PERIOD, "description": "repeat"},
        },
        "oneOf": [{"required": ["due_in"]}, {"required": ["due_at"]}],
    }
    if args_by_method:
        body["anyOf"] = [
            {"properties": {"method": {"const": method}, "args": args}}
            for method, args in sorted(args_by_method.items())
        ]
    return body


TOPIC_MESSAGE = {
    "type": "object",
    "required": ["value"],
    "additionalProperties": False,
    "properties": {"value": {}},
}
WORKFLOW_RUN = {
    "type": "object",
    "required": ["run"],
    "properties": {
        "run": {"type": "string"},
        "method": {"type": "string"},
        "status": {"type": "string"},
        "continued_from": {"type": ["string", "null"]},
        "continued_to": {"type": ["string", "null"]},
    },
}
INSPECTION = {
    "type": "object",
    "required": ["type", "key", "partition", "kind", "status"],
    "properties": {
        "type": {"type": "string"},
        "key": {"type": "string"},
        "partition": {"type": "integer", "minimum": 0},
        "kind": {"enum": ["actor", "entity", "stateless"]},
        "status": {"type": "string"},
    },
}
STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
CLUSTER = {
    "type": "object",
    "required": ["silo", "ring_version", "partitions", "members", "owners"],
    "properties": {
        "silo": {"type": "string"},
        "ring_version": {"type": "integer"},
        "partitions": {"type": "integer", "minimum": 1},
        "members": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "address", "status"],
                "properties": {
                    "id": {"type": "string"},
                    "address": {"type": "string"},
                    "status": {"type": "string"},
                    "partitions": {"type": "integer"},
                },
            },
        },
        "owners": {"type": "array", "items": {"type": "integer", "minimum": -1}},
    },
}
