"""An OpenAPI 3.1 description of a silo's HTTP API, generated from the app's actor classes."""

from __future__ import annotations

from typing import Any

from bayou import wire
from bayou.model import ActorSpec, HandlerSpec
from bayou.runtime.app import App

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "detail": {},
            },
        }
    },
}

_ERROR_RESPONSES = {
    "400": "malformed body, invalid key or header",
    "404": "unknown actor type or method",
    "409": "idempotency key reused for a different call, or a call cycle",
    "413": "body larger than the silo's limit",
    "415": "content type neither JSON nor msgpack",
    "422": "arguments do not match the handler's parameters",
    "500": "the handler raised (ActorError), recorded as the call's outcome",
    "503": "the silo cannot serve the call now; retry with the same Idempotency-Key",
    "504": "no reply before the deadline; the call may still complete",
}


def _error_responses() -> dict[str, Any]:
    return {
        code: {
            "description": text,
            "content": {wire.JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code, text in _ERROR_RESPONSES.items()
    }


def _parameters(tell: bool) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": "key",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": wire.MAX_KEY_LENGTH},
        },
        {
            "name": wire.IDEMPOTENCY_KEY,
            "in": "header",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 256},
        },
    ]
    if not tell:
        params.append(
            {
                "name": wire.TIMEOUT_HEADER,
                "in": "header",
                "required": False,
                "schema": {"type": "number", "exclusiveMinimum": 0},
            }
        )
    return params


def _operation(spec: ActorSpec, handler: HandlerSpec, *, tell: bool) -> dict[str, Any]:
    body_schema = handler.args_model.model_json_schema()
    if tell:
        ok = {
            "202": {
                "description": "stored in the actor's inbox; will be applied exactly once",
                "content": {
                    wire.JSON: {
                        "schema": {
                            "type": "object",
                            "properties": {"message_id": {"type": "string"}},
                        }
                    }
                },
            }
        }
    else:
        result_schema = handler.result_adapter.json_schema(mode="serialization")
        ok = {
            "200": {
                "description": "the handler's reply",
                "content": {
                    wire.JSON: {
                        "schema": {"type": "object", "properties": {"result": result_schema}}
                    }
                },
            }
        }
    verb = "tell" if tell else ("query" if handler.kind == "query" else "call")
    return {
        "operationId": f"{spec.type_name}.{handler.name}.{verb}",
        "summary": f"{verb} {spec.type_name}.{handler.name}",
        "parameters": _parameters(tell),
        "requestBody": {
            "required": False,
            "content": {wire.JSON: {"schema": body_schema}, wire.MSGPACK: {"schema": body_schema}},
        },
        "responses": ok | _error_responses(),
    }


def openapi_document(app: App) -> dict[str, Any]:
    """The OpenAPI document for every handler of every actor type the app hosts."""
    paths: dict[str, Any] = {}
    for type_name, spec in sorted(app.actors.items()):
        for name, handler in sorted(spec.handlers.items()):
            base = f"/v1/actors/{type_name}/{{key}}/{name}"
            paths[base] = {"post": _operation(spec, handler, tell=False)}
            if handler.kind == "exclusive":
                paths[f"{base}/tell"] = {"post": _operation(spec, handler, tell=True)}
    for path, text in (("/healthz", "the event loop answers"), ("/readyz", "serving calls")):
        paths[path] = {"get": {"summary": text, "responses": {"200": {"description": text}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "bayou silo", "version": "1"},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR}},
    }
