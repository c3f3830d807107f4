"""Bad input, by hand, at a real silo process: each is answered with a clear error, and the
silo keeps serving and loses nothing.

Every test ends by checking the sentinel: a counter acknowledged at 7 before any of the bad
input arrived must still read 7, and a new call must still work. Cases the runtime gets
wrong today are ``xfail(strict=True)`` with the diagnosis in the reason.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import msgpack
import pytest

from tests.cluster.fuzz_app import MAX_BODY
from tests.cluster.harness import SiloProcess

pytestmark = pytest.mark.cluster

SENTINEL = "/v1/actors/counter/sentinel"
LINK = "/v1/internal/link"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiloProcess]:
    """One silo for the module (bad input must not need a fresh one), with the sentinel."""
    proc = SiloProcess(
        tmp_path_factory.mktemp("bad-input") / "silo.db", app="tests.cluster.fuzz_app:app"
    )
    asyncio.run(proc.start())
    try:
        status, body = asyncio.run(
            _request(proc, "POST", SENTINEL + "/add", b'{"n": 7}', {"Idempotency-Key": "s"})
        )
        assert (status, json.loads(body)) == (200, {"result": 7})
        yield proc
        # Bad input is the client's failure, not the silo's: nothing was logged as a crash.
        assert "Traceback" not in proc.log_path.read_text(errors="replace")
    finally:
        asyncio.run(proc.kill())


async def _request(
    silo: SiloProcess,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, silo.url + path, data=body, headers=headers or {}) as resp,
    ):
        return resp.status, await resp.read()


async def request(
    silo: SiloProcess,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    status, raw = await _request(silo, method, path, body, headers)
    return status, strict_json(raw) if raw else None


def strict_json(raw: bytes) -> Any:
    """JSON as RFC 8259 has it: no NaN or Infinity."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(raw, parse_constant=refuse)


def error_of(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"type", "message", "detail"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in err["message"]
    return dict(err)


async def still_serving(silo: SiloProcess) -> None:
    """Nothing acknowledged was lost, and the silo answers new calls."""
    assert silo.proc is not None and silo.proc.poll() is None, silo.log()
    assert await request(silo, "POST", SENTINEL + "/get") == (200, {"result": 7})
    status, body = await request(silo, "POST", "/v1/actors/counter/after/add", b'{"n": 1}')
    assert status == 200, body
    assert (await request(silo, "GET", "/healthz"))[0] == 200


def deep(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


# -- sizes ----------------------------------------------------------------------------------------


async def _chunks(total: int) -> AsyncIterator[bytes]:
    yield b'{"n": 1, "pad": "'
    sent = 0
    while sent < total:
        yield b"x" * 8192
        sent += 8192
    yield b'"}'


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/v1/actors/counter/big/add", "json"),
        ("POST", "/v1/actors/counter/big/add", "msgpack"),
        ("POST", "/v1/actors/counter/big/add", "chunked"),
        ("POST", "/v1/actors/counter/big/add/tell", "json"),
        ("PUT", "/v1/actors/typed/big/reminders/r", "json"),
        ("POST", "/v1/actors/typed/big/topics/t", "json"),
    ],
)
async def test_oversized_bodies_are_413(
    target: SiloProcess, method: str, path: str, kind: str
) -> None:
    body: Any
    headers = {}
    if kind == "json":
        body = json.dumps({"n": 1, "pad": "x" * 2 * MAX_BODY}).encode()
    elif kind == "msgpack":
        body = msgpack.packb({"n": 1, "pad": b"x" * 2 * MAX_BODY})
        headers["Content-Type"] = "application/msgpack"
    else:
        body = _chunks(2 * MAX_BODY)  # no Content-Length: the limit must hold while reading
    status, got = await request(target, method, path, body, headers)
    err = error_of(got)
    assert (status, err["type"]) == (413, "PayloadTooLarge"), got
    assert err["detail"] == {"limit": MAX_BODY}
    assert (await request(target, "POST", "/v1/actors/counter/big/get"))[1] == {"result": 0}
    await still_serving(target)


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type", "mentions"),
    [
        # Every unknown argument named, in a body just under the limit.
        (
            "/v1/actors/typed/h/add",
            json.dumps({f"a{i}": i for i in range(4000)}),
            422,
            "InvalidArguments",
            "a3999",
        ),
        # An integer with more digits than Python will parse from text.
        ("/v1/actors/typed/h/add", '{"n": ' + "9" * 5000 + "}", 400, "BadRequest", "body"),
        ("/v1/actors/typed/h/add", '{"n": 1e400}', 422, "InvalidArguments", "n"),
        (
            "/v1/actors/typed/h/stock",
            json.dumps({"item": {"name": "i"}, "extra": [{"name": "e"}] * 11}),
            422,
            "InvalidArguments",
            "extra",
        ),
        # Nesting the JSON parser refuses, arrays and objects alike.
        ("/v1/actors/typed/h/annotate", '{"meta": ' + "[" * 60_000, 400, "BadRequest", "body"),
        (
            "/v1/actors/typed/h/annotate",
            '{"meta": ' + deep(10_000) + "}",
            400,
            "BadRequest",
            "body",
        ),
    ],
)
async def test_huge_and_deep_json_is_refused_clearly(
    target: SiloProcess, path: str, body: str, status: int, error_type: str, mentions: str
) -> None:
    got_status, got = await request(target, "POST", path, body.encode())
    err = error_of(got)
    assert (got_status, err["type"]) == (status, error_type), got
    assert mentions in json.dumps(got)
    await still_serving(target)


async def test_a_long_string_argument_is_fine(target: SiloProcess) -> None:
    body = json.dumps({"text": "y" * (MAX_BODY - 100)}).encode()
    assert await request(target, "POST", "/v1/actors/typed/long/note", body) == (
        200,
        {"result": 1},
    )
    await still_serving(target)


async def test_a_deeply_nested_argument_does_not_poison_the_actor(target: SiloProcess) -> None:
    body = ('{"meta": ' + deep(600) + "}").encode()
    status, got = await request(target, "POST", "/v1/actors/typed/poison/annotate", body)
    assert status < 500, got
    for path, args in (("add", b'{"n": 1}'), ("get", b"")):
        status, got = await request(target, "POST", f"/v1/actors/typed/poison/{path}", args)
        assert status == 200, got
    await still_serving(target)


# -- media types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "status", "error_type"),
    [
        ("text/plain", b"n=1", 415, "UnsupportedMediaType"),
        ("text/html", b"<p>1</p>", 415, "UnsupportedMediaType"),
        ("application/xml", b"<n>1</n>", 415, "UnsupportedMediaType"),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\n1\r\n--x--", 415, "UnsupportedMediaType"),
        ("image/png", b"\x89PNG\r\n", 415, "UnsupportedMediaType"),
        ("application/json", msgpack.packb({"n": 1}), 400, "BadRequest"),
        ("application/msgpack", b'{"n": 1}', 400, "BadRequest"),
        ("application/msgpack", msgpack.packb({1: 2}), 400, "BadRequest"),
        ("application/msgpack", msgpack.packb([1, 2]), 400, "BadRequest"),
        ("application/json", b"\xff\xfe\xfd", 400, "BadRequest"),
        ("application/json", b'"just a string"', 400, "BadRequest"),
        ("application/json", b"null", 400, "BadRequest"),
    ],
)
async def test_wrong_content_types_and_encodings(
    target: SiloProcess, content_type: str, body: bytes, status: int, error_type: str
) -> None:
    got_status, got = await request(
        target, "POST", "/v1/actors/counter/ct/add", body, {"Content-Type": content_type}
    )
    assert (got_status, error_of(got)["type"]) == (status, error_type), got
    assert (await request(target, "POST", "/v1/actors/counter/ct/get"))[1] == {"result": 0}
    await still_serving(target)


# -- routes, types, methods ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("POST", "/v1/actors/nope/k/add", 404, "UnknownActorType"),
        ("POST", "/v1/actors/nope/k/add/tell", 404, "UnknownActorType"),
        ("GET", "/v1/actors/nope/k/events/e", 404, "UnknownActorType"),
        ("GET", "/v1/actors/nope/k/streams/s/items", 404, "UnknownActorType"),
        ("GET", "/v1/actors/nope/k/reminders", 404, "UnknownActorType"),
        ("GET", "/v1/actors/nope/k/workflows", 404, "UnknownActorType"),
        ("POST", "/v1/actors/counter/k/nope", 404, "UnknownMethod"),
        ("POST", "/v1/actors/counter/k/nope/tell", 404, "UnknownMethod"),
        ("POST", "/v1/actors/counter/k/_private", 404, "UnknownMethod"),
        ("POST", "/v1/actors/counter/k/on_activate", 404, "UnknownMethod"),
        ("POST", "/v1/actors/counter/k/get/tell", 400, "BadRequest"),
        ("POST", "/v1/nothing", 404, "NotFound"),
        ("POST", "/v1/actors/counter//add", 404, "NotFound"),
        ("GET", "/v1/actors/counter/k/add", 405, "MethodNotAllowed"),
        ("PUT", "/v1/actors/counter/k/add", 405, "MethodNotAllowed"),
        ("DELETE", "/v1/actors/counter/k/add", 405, "MethodNotAllowed"),
        ("POST", "/v1/cluster", 405, "MethodNotAllowed"),
        ("POST", "/healthz", 405, "MethodNotAllowed"),
    ],
)
async def test_unknown_types_methods_and_routes(
    target: SiloProcess, method: str, path: str, status: int, error_type: str
) -> None:
    got_status, got = await request(target, method, path, b"{}")
    err = error_of(got)
    assert (got_status, err["type"]) == (status, error_type), got
    if error_type in ("UnknownActorType", "UnknownMethod"):
        assert err["detail"]["known"], got  # says what does exist
    await still_serving(target)


# -- keys and headers ---------------------------------------------------------------------------

ACTOR_ROUTES = [
    ("POST", "/v1/actors/counter/{key}/add"),
    ("POST", "/v1/actors/counter/{key}/add/tell"),
    ("GET", "/v1/actors/typed/{key}/events/e"),
    ("GET", "/v1/actors/typed/{key}/streams/s/items"),
    ("GET", "/v1/actors/typed/{key}/reminders"),
    ("PUT", "/v1/actors/typed/{key}/reminders/r"),
    ("POST", "/v1/actors/typed/{key}/topics/t"),
    ("GET", "/v1/actors/typed/{key}/workflows"),
]


@pytest.mark.parametrize(("method", "route"), ACTOR_ROUTES)
@pytest.mark.parametrize(
    ("key", "mentions"),
    [
        ("k" * 257, "longer"),
        ("a%01b", "control"),
        ("a%7Fb", "control"),
        ("%0A", "control"),
        ("%00", "control"),
    ],
)
async def test_invalid_keys_are_400(
    target: SiloProcess, method: str, route: str, key: str, mentions: str
) -> None:
    status, got = await request(target, method, route.format(key=key), b'{"n": 1}')
    err = error_of(got)
    assert (status, err["type"], err["detail"]) == (400, "BadRequest", {"field": "key"}), got
    assert mentions in err["message"]
    await still_serving(target)


async def test_the_longest_key_and_odd_but_valid_keys_work(target: SiloProcess) -> None:
    for key in ("k" * 256, "a%2Fb", "%E2%98%83", "%zz", "a%20b%09"[:-3]):
        status, got = await request(target, "POST", f"/v1/actors/counter/{key}/add", b'{"n": 2}')
        assert (status, got) == (200, {"result": 2}), key
    await still_serving(target)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Idempotency-Key", ""),
        ("Idempotency-Key", "i" * 257),
        ("Idempotency-Key", "tab\there"),
        ("Bayou-Timeout", "soon"),
        ("Bayou-Timeout", "0"),
        ("Bayou-Timeout", "-1"),
        ("Bayou-Timeout", "nan"),
    ],
)
async def test_invalid_headers_are_400(target: SiloProcess, header: str, value: str) -> None:
    status, got = await request(
        target, "POST", "/v1/actors/counter/h/add", b'{"n": 1}', {header: value}
    )
    err = error_of(got)
    assert (status, err["type"], err["detail"]) == (400, "BadRequest", {"field": header}), got
    assert (await request(target, "POST", "/v1/actors/counter/h/get"))[1] == {"result": 0}
    await still_serving(target)


# -- the pattern routes: events, streams, topics, reminders ----------------------------------

R = "/v1/actors/typed/q/reminders/r"
MSGPACK = {"Content-Type": "application/msgpack"}


def _reminder(**fields: Any) -> bytes:
    return json.dumps({"method": "add", "args": {"n": 1}, "due_in": 60} | fields).encode()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("GET", "/v1/actors/typed/q/events/e?wait=-1", None, 400, "wait"),
        ("GET", "/v1/actors/typed/q/events/e?wait=nan", None, 400, "wait"),
        ("GET", "/v1/actors/typed/q/events/e?wait=1e309", None, 400, "wait"),
        ("GET", "/v1/actors/typed/q/events/e?wait=301", None, 400, "wait"),
        ("GET", "/v1/actors/typed/q/events/e?wait=soon", None, 400, "wait"),
        ("GET", "/v1/actors/typed/q/events/" + "e" * 129, None, 400, "name"),
        ("GET", "/v1/actors/typed/q/events/e%01", None, 400, "name"),
        ("GET", "/v1/actors/typed/q/streams/s/items?after=abc", None, 400, "after"),
        ("GET", "/v1/actors/typed/q/streams/s/items?after=-2", None, 400, "after"),
        ("GET", "/v1/actors/typed/q/streams/s/items?after=1.5", None, 400, "after"),
        ("GET", "/v1/actors/typed/q/streams/s/items?after=" + "9" * 30, None, 400, "after"),
        ("GET", "/v1/actors/typed/q/streams/s/items?limit=0", None, 400, "limit"),
        ("GET", "/v1/actors/typed/q/streams/s/items?limit=1001", None, 400, "limit"),
        ("GET", "/v1/actors/typed/q/streams/s/items?limit=2.5", None, 400, "limit"),
        ("GET", "/v1/actors/typed/q/streams/s/items?wait=-0.5", None, 400, "wait"),
        ("GET", "/v1/actors/typed/q/streams/s?after=1e400", None, 400, "after"),
        ("GET", "/v1/actors/typed/q/streams/%7F", None, 400, "name"),
        ("POST", "/v1/actors/typed/q/topics/t", b'{"v": 1}', 400, "value"),
        ("POST", "/v1/actors/typed/q/topics/t", b'{"value": 1, "x": 2}', 400, "value"),
        ("POST", "/v1/actors/typed/q/topics/t", b"[1]", 400, "body"),
        ("POST", "/v1/actors/typed/q/topics/" + "t" * 129, b'{"value": 1}', 400, "name"),
        # Values the journal or a JSON reply could not hold.
        ("POST", "/v1/actors/typed/q/topics/t", b'{"value": "a\\ud800"}', 422, "value"),
        ("POST", "/v1/actors/typed/q/topics/t", b'{"value": 18446744073709551616}', 422, "value"),
        ("POST", "/v1/actors/typed/q/topics/t", b'{"value": [1e400]}', 422, "value"),
        # Nothing could ever receive these.
        ("POST", "/v1/actors/counter/q/topics/t", b'{"value": 1}', 400, "type"),
        ("POST", "/v1/actors/echo/q/topics/t", b'{"value": 1}', 400, "type"),
        ("PUT", R, _reminder(method="nope"), 404, None),
        ("PUT", R, _reminder(method="get"), 422, "method"),
        ("PUT", R, _reminder(method="tally", args={}), 422, "method"),
        ("PUT", R, _reminder(method=5), 422, "method"),
        ("PUT", R, _reminder(due_in=-1), 422, "due_in"),
        ("PUT", R, _reminder(due_in=None), 422, "due_in"),
        ("PUT", R, _reminder(due_at=1e9), 422, "due_in"),
        ("PUT", R, _reminder(due_in="soon"), 422, "due_in"),
        ("PUT", R, _reminder(args={"n": "x"}), 422, "n"),
        ("PUT", R, _reminder(args=[1]), 422, "args"),
        ("PUT", R, _reminder(period=0.01), 422, "period"),
        ("PUT", R, _reminder(extra=1), 422, "extra"),
        ("PUT", R, _reminder().replace(b"60", b"1e400"), 422, "due_in"),
        ("PUT", R, msgpack.packb({"method": "add", "due_in": math.inf}), 422, "due_in"),
        ("PUT", R, b"[]", 400, "body"),
        ("PUT", "/v1/actors/typed/q/reminders/" + "r" * 129, _reminder(), 400, "name"),
        ("PUT", "/v1/actors/echo/q/reminders/r", _reminder(method="say"), 400, "type"),
        ("DELETE", "/v1/actors/typed/q/reminders/%00", None, 400, "name"),
    ],
)
async def test_bad_input_to_the_pattern_routes(
    target: SiloProcess,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    field: str | None,
) -> None:
    headers = MSGPACK if body is not None and body[:1] not in (b"{", b"[") else None
    got_status, got = await request(target, method, path, body, headers)
    err = error_of(got)
    assert got_status == status, got
    if isinstance(err["detail"], list):  # InvalidArguments: one entry per problem
        assert field in [d["field"] for d in err["detail"]], got
    elif field is not None:
        assert err["detail"] == {"field": field}, got
    else:
        assert err["detail"]["known"], got
    actor = path.split("/")[3]
    reminders = await request(target, "GET", f"/v1/actors/{actor}/q/reminders")
    assert reminders == (200, {"reminders": []})
    await still_serving(target)


async def test_a_topic_may_be_named_like_a_route_word(target: SiloProcess) -> None:
    """ ".../topics/tell" also matches the tell route (of a handler named "topics")."""
    status, got = await request(target, "POST", "/v1/actors/typed/tt/topics/tell", b'{"value": 1}')
    assert status == 202 and set(got) == {"message_id"}, got
    await still_serving(target)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("typed/nf/note", msgpack.packb({"text": "t", "score": math.nan}), "score"),
        ("typed/nf/note", msgpack.packb({"text": "t", "score": -math.inf}), "score"),
        ("typed/nf/note", b'{"text": "t", "score": 1e400}', "score"),
        ("typed/nf/note", b'{"text": "t", "score": "inf"}', "score"),
        ("typed/nf/annotate", b'{"meta": {"a": [1, -1e999]}}', "meta"),
        ("typed/nf/annotate/tell", msgpack.packb({"meta": {"x": math.nan}}), "meta"),
    ],
)
async def test_numbers_json_cannot_carry_are_refused(
    target: SiloProcess, path: str, body: bytes, field: str
) -> None:
    """NaN and infinity would reach the state, and every later reply would be invalid JSON."""
    headers = MSGPACK if body[:1] != b"{" else None
    status, got = await request(target, "POST", f"/v1/actors/{path}", body, headers)
    err = error_of(got)
    assert (status, err["type"]) == (422, "InvalidArguments"), got
    assert field in [d["field"] for d in err["detail"]], got
    state = await request(target, "POST", "/v1/actors/typed/nf/get")
    assert state == (200, {"result": {"total": 0, "notes": [], "items": [], "meta": {},
                                      "score": 0.0}})  # fmt: skip
    await still_serving(target)


# -- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "args", "field"),
    [
        ("typed/w/add", {"n": "x"}, "n"),
        ("typed/w/add", {"n": None}, "n"),
        ("typed/w/add", {"n": []}, "n"),
        ("typed/w/add", {"n": {}}, "n"),
        ("typed/w/add", {"n": 1.5}, "n"),
        ("typed/w/add", {}, "n"),
        ("typed/w/add", {"n": 1, "m": 2}, "m"),
        ("typed/w/note", {"text": 5}, "text"),
        ("typed/w/note", {"text": "t", "level": "loud"}, "level"),
        ("typed/w/note", {"text": "t", "flag": "perhaps"}, "flag"),
        ("typed/w/stock", {"item": "x"}, "item"),
        ("typed/w/stock", {"item": {"name": "x", "quantity": 0}}, "item.quantity"),
        ("typed/w/stock", {"item": {"quantity": 1}}, "item.name"),
        ("typed/w/annotate", {"meta": [1]}, "meta"),
        ("typed/w/bounded", {"n": 101, "s": "x"}, "n"),
        ("typed/w/bounded", {"n": 1, "s": ""}, "s"),
        ("typed/w/bounded", {"n": 1, "s": "x" * 11}, "s"),
    ],
)
async def test_wrong_argument_types_are_422_naming_the_field(
    target: SiloProcess, path: str, args: dict[str, Any], field: str
) -> None:
    status, got = await request(target, "POST", f"/v1/actors/{path}", json.dumps(args).encode())
    err = error_of(got)
    assert (status, err["type"]) == (422, "InvalidArguments"), got
    assert field in [d["field"] for d in err["detail"]], got
    assert (await request(target, "POST", "/v1/actors/typed/w/get"))[1]["result"]["total"] == 0
    await still_serving(target)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/actors/typed/big/add", b'{"n": 18446744073709551616}'),
        ("/v1/actors/counter/big/add", b'{"n": -9223372036854775809}'),
        ("/v1/actors/counter/big/add/tell", b'{"n": 18446744073709551616}'),
    ],
)
async def test_integers_out_of_range_are_refused(
    target: SiloProcess, path: str, body: bytes
) -> None:
    status, got = await request(target, "POST", path, body)
    assert 400 <= status < 500, got
    await still_serving(target)


async def test_a_lone_surrogate_is_refused(target: SiloProcess) -> None:
    status, got = await request(
        target, "POST", "/v1/actors/typed/sur/note", b'{"text": "a\\ud800b"}'
    )
    assert 400 <= status < 500, got
    await still_serving(target)


async def test_nan_is_not_json(target: SiloProcess) -> None:
    status, raw = await _request(
        target, "POST", "/v1/actors/typed/nan/note", b'{"text": "t", "score": NaN}'
    )
    if status == 200:
        status, raw = await _request(target, "POST", "/v1/actors/typed/nan/get")
        strict_json(raw)  # the reply must be JSON
    else:
        assert status == 400
        return
    assert not math.isnan(strict_json(raw)["result"]["score"])


# -- malformed HTTP -------------------------------------------------------------------------------


async def raw_exchange(silo: SiloProcess, *pieces: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``pieces`` over one connection, a moment apart (so that the silo sees a
    request's head before the rest of it); the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", silo.port)
    try:
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(0.2)
            writer.write(piece)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in filter(None, lines):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        return int(status_line.split(" ")[1]), headers, await reader.readexactly(length)
    finally:
        writer.close()


HEAD = b"POST /v1/actors/counter/g/add HTTP/1.1\r\nHost: silo\r\n"
BODY = b'{"n": 1}'


def _head(*lines: bytes) -> bytes:
    return HEAD + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


@pytest.mark.parametrize(
    ("pieces", "answers"),
    [
        pytest.param([b"GARBAGE\x00\xff\r\n\r\n"], {(400, "BadRequest")}, id="garbage"),
        pytest.param(
            [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)],
            {(400, "BadRequest")},
            id="tls-hello",
        ),
        pytest.param(
            [b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"], {(400, "BadRequest")}, id="http-version"
        ),
        pytest.param([b"GET /healthz HTTP/1.1\r\n\r\n"], {(400, "BadRequest")}, id="no-host"),
        pytest.param(
            [b"POST /v1/actors/counter/g/add HTTP/1.1\nHost: x\n\n"],
            {(400, "BadRequest")},
            id="bare-lf",
        ),
        pytest.param(
            [b"GET /v1/actors/counter/a\x00b/add HTTP/1.1\r\nHost: x\r\n\r\n"],
            {(400, "BadRequest")},
            id="nul-in-path",
        ),
        pytest.param([_head(b"Bad Header: x")], {(400, "BadRequest")}, id="header-token"),
        pytest.param([_head(b"Content-Length: -5")], {(400, "BadRequest")}, id="negative-length"),
        pytest.param(
            [_head(b"Content-Length: 99999999999999999999999")],
            {(400, "BadRequest")},
            id="length-overflow",
        ),
        pytest.param(
            [_head(b"Content-Length: 3", b"Content-Length: 4") + b"abcd"],
            {(400, "BadRequest")},
            id="two-lengths",
        ),
        pytest.param(
            [_head(b"Content-Length: 3", b"Transfer-Encoding: chunked")],
            {(400, "BadRequest")},
            id="length-and-chunked",
        ),
        pytest.param(
            [_head(b"Transfer-Encoding: gzip")],
            {(400, "BadRequest")},
            id="unknown-transfer-encoding",
        ),
        pytest.param(
            [_head(b"Transfer-Encoding: chunked") + b"zz\r\n"],
            {(400, "BadRequest")},
            id="chunk-size",
        ),
        # aiohttp's C parser drops a body that turns malformed after the handler began to
        # read it without telling the reader, so the body's deadline answers (its Python
        # parser tells: 400 at once). Either way: an answer, in the shape, never a hang.
        pytest.param(
            [_head(b"Transfer-Encoding: chunked"), b'5\r\n{"n":', b"xx\r\n0\r\n\r\n"],
            {(400, "BadRequest"), (408, "RequestTimeout")},
            id="chunk-data-later",
        ),
        pytest.param(
            [_head(b"Content-Length: 100") + b"{}"], {(408, "RequestTimeout")}, id="body-never-ends"
        ),
        pytest.param(
            [_head(b"Content-Encoding: gzip", b"Content-Length: 10") + b"0123456789"],
            {(400, "BadRequest")},
            id="bad-gzip",
        ),
        pytest.param(
            [_head(b"Content-Encoding: deflate", b"Content-Length: 10"), b"0123456789"],
            {(400, "BadRequest")},
            id="bad-deflate-later",
        ),
        pytest.param(
            [_head(b"Content-Encoding: zstd", b"Content-Length: 4") + b"abcd"],
            {(400, "BadRequest")},
            id="unknown-content-encoding",
        ),
        pytest.param(
            [_head(b"X-Big: " + b"a" * 10_000, b"Content-Length: 8") + BODY],
            {(431, "HeadersTooLarge")},
            id="long-header",
        ),
        pytest.param(
            [_head(*(b"X-%d: 1" % i for i in range(200)))],
            {(431, "HeadersTooLarge")},
            id="many-headers",
        ),
        pytest.param(
            [b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"],
            {(414, "UriTooLong")},
            id="long-request-line",
        ),
        pytest.param(
            [_head(b"Expect: 200-nothing", b"Content-Length: 8") + BODY],
            {(417, "BadRequest")},
            id="unknown-expect",
        ),
        pytest.param(
            [b"POST /v1/nothing HTTP/1.1\r\nHost: x\r\nExpect: nothing\r\n\r\n"],
            {(417, "BadRequest")},
            id="unknown-expect-no-route",
        ),
        pytest.param(
            [_head(b"Idempotency-Key: a\xffb", b"Content-Length: 8") + BODY],
            {(400, "BadRequest")},
            id="idempotency-key-not-utf8",
        ),
    ],
)
async def test_malformed_http_is_answered_in_the_error_shape(
    target: SiloProcess, pieces: list[bytes], answers: set[tuple[int, str]]
) -> None:
    status, headers, body = await raw_exchange(target, *pieces)
    assert headers.get("content-type", "").startswith("application/json"), (status, body)
    err = error_of(strict_json(body))
    assert (status, err["type"]) in answers, body
    assert (await request(target, "POST", "/v1/actors/counter/g/get"))[1] == {"result": 0}
    await still_serving(target)


async def test_an_oversized_header_gets_the_error_shape(target: SiloProcess) -> None:
    status, raw = await _request(
        target, "POST", "/v1/actors/counter/hh/add", b'{"n": 1}', {"X-Big": "a" * 10_000}
    )
    assert status == 431
    err = error_of(strict_json(raw))
    assert (err["type"], err["detail"]) == ("HeadersTooLarge", {"limit": 8190})
    await still_serving(target)


# -- the silo-to-silo link ----------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?v=2", "?v=abc", "?v=1.0", "?v="])
async def test_a_link_with_a_wrong_version_is_refused(target: SiloProcess, query: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(target.url + LINK + query)
        assert refused.value.status == 400
        assert refused.value.headers is not None
        assert refused.value.headers["Bayou-Link-Versions"] == "1"
        async with session.get(target.url + LINK + query) as resp:
            assert resp.status == 400
            assert "version" in error_of(await resp.json())["message"]
        async with session.get(target.url + LINK + "?v=1") as resp:  # no upgrade asked
            assert resp.status == 400
            assert "websocket" in error_of(await resp.json())["message"]
    await still_serving(target)


@pytest.mark.parametrize(
    ("message", "close_code"),
    [
        ("text", aiohttp.WSCloseCode.UNSUPPORTED_DATA),
        (b"\xc1", aiohttp.WSCloseCode.INVALID_TEXT),
        (b"", aiohttp.WSCloseCode.INVALID_TEXT),
        (msgpack.packb({"a": 1}), aiohttp.WSCloseCode.PROTOCOL_ERROR),
        (msgpack.packb([[0, 1]]), aiohttp.WSCloseCode.PROTOCOL_ERROR),
        (msgpack.packb([[0, "id", {}]]), aiohttp.WSCloseCode.PROTOCOL_ERROR),
        (msgpack.packb([[1, 1, True, {}]]), aiohttp.WSCloseCode.PROTOCOL_ERROR),
        (msgpack.packb([[True, 1, {}]]), aiohttp.WSCloseCode.PROTOCOL_ERROR),
        (msgpack.packb([[0, 1, {}], "junk"]), aiohttp.WSCloseCode.PROTOCOL_ERROR),
    ],
)
async def test_garbage_frames_close_the_link_with_a_reason(
    target: SiloProcess, message: str | bytes, close_code: int
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(target.url + LINK + "?v=1") as ws,
    ):
        if isinstance(message, str):
            await ws.send_str(message)
        else:
            await ws.send_bytes(message)
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        assert ws.close_code == close_code
    await still_serving(target)


async def link_exchange(silo: SiloProcess, payloads: list[Any]) -> list[tuple[bool, Any]]:
    """Send each payload as a request on one link; (ok, reply) for each, in order."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(silo.url + LINK + "?v=1") as ws,
    ):
        await ws.send_bytes(msgpack.packb([[0, i, p] for i, p in enumerate(payloads)]))
        replies: dict[int, tuple[bool, Any]] = {}
        while len(replies) < len(payloads):
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            for _, request_id, ok, body in msgpack.unpackb(msg.data, strict_map_key=False):
                replies[request_id] = (ok, body)
        return [replies[i] for i in range(len(payloads))]


def link_call(**fields: Any) -> dict[str, Any]:
    payload = {"op": "call", "type": "counter", "key": "lk", "method": "add", "args": {"n": 1}}
    return payload | fields


async def test_malformed_link_requests_are_answered_and_the_link_stays(
    target: SiloProcess,
) -> None:
    bad = [
        "not a map",
        {"op": "explode"},
        {"op": "call", "key": "k", "method": "add"},
        link_call(args=[1]),
        link_call(type="nope"),
        link_call(method="nope"),
        link_call(args={"n": "x"}),
        link_call(timeout="soon"),
        {"op": "tell", "type": "counter", "key": "k", "method": "get", "args": {}, "idem": "t"},
    ]
    replies = await link_exchange(target, [*bad, link_call(key="linked")])
    for payload, (ok, body) in zip(bad, replies, strict=False):
        assert not ok, (payload, body)
        assert body["type"] in {
            "BadRequest",
            "UnknownActorType",
            "UnknownMethod",
            "InvalidArguments",
        }, body
        assert "Traceback" not in body["message"]
    assert replies[-1] == (True, 1)  # the same link still serves
    await still_serving(target)


@pytest.mark.parametrize(
    "fields",
    [
        {"key": ""},
        {"key": "a\x00b"},
        {"key": "k" * 300},
        {"idem": ""},
        {"idem": 5},
        {"idem": "i" * 300},
    ],
)
async def test_the_link_checks_keys_like_http(target: SiloProcess, fields: dict[str, Any]) -> None:
    ((ok, body),) = await link_exchange(target, [link_call(**fields)])
    assert not ok and body["type"] == "BadRequest", body
