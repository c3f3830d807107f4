"""The HTTP contract of a real silo process: statuses, error shapes, media types."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import msgpack
import pytest

from tests.cluster.harness import SiloProcess


async def post(
    silo: SiloProcess,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(silo.url + path, data=body, headers=headers or {}) as resp,
    ):
        raw = await resp.read()
        if resp.content_type == "application/msgpack":
            return resp.status, msgpack.unpackb(raw)
        return resp.status, json.loads(raw) if raw else None


JSON = {"Content-Type": "application/json"}


def error_of(body: Any) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"type", "message", "detail"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in err["message"]
    return dict(err)


async def test_call_returns_the_result(silo: SiloProcess) -> None:
    status, body = await post(silo, "/v1/actors/counter/a/add", b'{"n": 2}', JSON)
    assert (status, body) == (200, {"result": 2})
    status, body = await post(silo, "/v1/actors/counter/a/add", b'{"n": 3}')
    assert (status, body) == (200, {"result": 5})
    status, body = await post(silo, "/v1/actors/counter/a/get")
    assert (status, body) == (200, {"result": 5})


async def test_msgpack_in_and_out(silo: SiloProcess) -> None:
    headers = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}
    status, body = await post(silo, "/v1/actors/counter/m/add", msgpack.packb({"n": 7}), headers)
    assert (status, body) == (200, {"result": 7})


async def test_keys_are_percent_decoded_and_distinct(silo: SiloProcess) -> None:
    await post(silo, "/v1/actors/counter/a%2Fb%20c/add", b'{"n": 1}')
    status, body = await post(silo, "/v1/actors/counter/a%2Fb%20c/get")
    assert (status, body) == (200, {"result": 1})
    status, body = await post(silo, "/v1/actors/counter/a/get")
    assert (status, body) == (200, {"result": 0})


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "error_type", "mentions"),
    [
        ("/v1/actors/nope/k/add", b"{}", {}, 404, "UnknownActorType", "nope"),
        ("/v1/actors/counter/k/nope", b"{}", {}, 404, "UnknownMethod", "nope"),
        ("/v1/nothing", b"{}", {}, 404, "NotFound", "/v1/nothing"),
        ("/v1/actors/counter/k/add", b'{"n": "x"}', {}, 422, "InvalidArguments", "n"),
        ("/v1/actors/counter/k/add", b'{"m": 1}', {}, 422, "InvalidArguments", "m"),
        ("/v1/actors/counter/k/add", b"{}", {}, 422, "InvalidArguments", "n"),
        ("/v1/actors/counter/k/add", b'{"n": ', {}, 400, "BadRequest", "malformed"),
        ("/v1/actors/counter/k/add", b"[1]", {}, 400, "BadRequest", "object"),
        ("/v1/actors/counter/k/add", b"[" * 60_000, {}, 400, "BadRequest", "malformed"),
        (
            "/v1/actors/counter/k/add",
            b"\xc1",
            {"Content-Type": "application/msgpack"},
            400,
            "BadRequest",
            "msgpack",
        ),
        (
            "/v1/actors/counter/k/add",
            b"n=1",
            {"Content-Type": "text/plain"},
            415,
            "UnsupportedMediaType",
            "text/plain",
        ),
        (
            "/v1/actors/counter/k/add",
            b'{"n": 1}',
            {"Idempotency-Key": ""},
            400,
            "BadRequest",
            "Idempotency-Key",
        ),
        (
            "/v1/actors/counter/k/add",
            b'{"n": 1}',
            {"Bayou-Timeout": "soon"},
            400,
            "BadRequest",
            "Bayou-Timeout",
        ),
        ("/v1/actors/counter/" + "k" * 300 + "/add", b'{"n": 1}', {}, 400, "BadRequest", "key"),
        ("/v1/actors/counter/a%01b/add", b'{"n": 1}', {}, 400, "BadRequest", "control"),
        ("/v1/actors/counter/k/get/tell", b"{}", {}, 400, "BadRequest", "query"),
        (
            "/v1/actors/probe/k/boom",
            b'{"message": "no such thing"}',
            {},
            500,
            "ActorError",
            "no such thing",
        ),
    ],
)
async def test_every_failure_is_a_clear_error(
    silo: SiloProcess,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error_type: str,
    mentions: str,
) -> None:
    got_status, got = await post(silo, path, body, headers)
    err = error_of(got)
    assert (got_status, err["type"]) == (status, error_type), got
    assert mentions in json.dumps(got), got


async def test_invalid_arguments_name_the_field(silo: SiloProcess) -> None:
    status, body = await post(silo, "/v1/actors/loyalty/k/add", b'{"n": -5}')
    err = error_of(body)
    assert status == 422
    assert err["detail"] == [{"field": "n", "message": "Input should be greater than 0"}]


async def test_actor_error_carries_the_exception_type(silo: SiloProcess) -> None:
    status, body = await post(silo, "/v1/actors/probe/k/boom", b'{"message": "gone"}')
    assert status == 500
    assert error_of(body)["detail"] == {"exception": "LookupError"}


async def test_oversized_body_is_413_and_the_silo_keeps_serving(silo: SiloProcess) -> None:
    big = json.dumps({"n": 1, "pad": "x" * 200_000}).encode()
    status, body = await post(silo, "/v1/actors/counter/k/add", big)
    assert (status, error_of(body)["type"]) == (413, "PayloadTooLarge")
    status, body = await post(silo, "/v1/actors/counter/k/add", b'{"n": 1}')
    assert (status, body) == (200, {"result": 1})


async def test_timeout_is_504(silo: SiloProcess) -> None:
    status, body = await post(
        silo, "/v1/actors/probe/t/sleep", b'{"seconds": 2}', {"Bayou-Timeout": "0.2"}
    )
    assert (status, error_of(body)["type"]) == (504, "CallTimeout")


async def test_wrong_http_method_is_405(silo: SiloProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(silo.url + "/v1/actors/counter/k/add") as resp,
    ):
        assert resp.status == 405
        assert error_of(await resp.json())["type"] == "MethodNotAllowed"


async def test_tell_answers_202_and_is_applied_once(silo: SiloProcess) -> None:
    headers = {"Idempotency-Key": "tell-1"}
    for _ in range(3):
        status, body = await post(silo, "/v1/actors/counter/t/add/tell", b'{"n": 4}', headers)
        assert (status, body) == (202, {"message_id": "tell-1"})
    for _ in range(100):
        _, body = await post(silo, "/v1/actors/counter/t/get")
        if body["result"] == 4:
            break
    assert body == {"result": 4}
    _, again = await post(silo, "/v1/actors/counter/t/get")
    assert again == {"result": 4}


async def test_idempotency_key_reuse_for_another_call_is_409(silo: SiloProcess) -> None:
    headers = {"Idempotency-Key": "same"}
    assert (await post(silo, "/v1/actors/counter/i/add", b'{"n": 1}', headers))[0] == 200
    assert await post(silo, "/v1/actors/counter/i/add", b'{"n": 1}', headers) == (
        200,
        {"result": 1},
    )
    status, body = await post(silo, "/v1/actors/counter/i/add", b'{"n": 2}', headers)
    assert (status, error_of(body)["type"]) == (409, "IdempotencyKeyReused")


async def test_health_readiness_cluster_and_openapi(silo: SiloProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(silo.url + path) as resp:
                assert resp.status == 200
        async with session.get(silo.url + "/v1/cluster") as resp:
            cluster = await resp.json()
            assert cluster["members"][0]["status"] == "active"
            assert cluster["partitions"] == 1024
        async with session.get(silo.url + "/v1/openapi.json") as resp:
            doc = await resp.json()
    add = doc["paths"]["/v1/actors/counter/{key}/add"]["post"]
    assert add["requestBody"]["content"]["application/json"]["schema"]["required"] == ["n"]
    assert "/v1/actors/counter/{key}/add/tell" in doc["paths"]
    assert "/v1/actors/counter/{key}/get/tell" not in doc["paths"]
