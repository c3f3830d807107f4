"""The client against a real HTTP server on 127.0.0.1 that speaks the wire contract.

The server is a toy silo for one actor type, ``counter``, with idempotency-key dedup and
fault injection (dropped connections, 503/504 answers, hangs, malformed replies), so retries,
deadlines and error mapping are exercised over real sockets rather than mocks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import BaseModel

from bayou import errors, wire
from bayou.client import ActorRef, Client
from bayou.client.backoff import Backoff
from bayou.model import Actor, actor, query

# --------------------------------------------------------------------------- the actor


class CounterState(BaseModel):
    value: int = 0


@actor("counter")
class Counter(Actor[CounterState]):
    async def add(self, n: int) -> int:
        self.state.value += n
        return self.state.value

    @query
    async def get(self) -> int:
        return self.state.value


# --------------------------------------------------------------------------- the toy silo

# A fault is consumed by one request, in order: a named misbehaviour, or a raw reply
# (status, content type, body bytes) sent instead of the normal one.
Fault = str | tuple[int, str, bytes]


@dataclass
class Seen:
    """One request as the toy silo received it."""

    tell: bool
    type_name: str
    key: str
    method: str
    args: Any
    idempotency_key: str | None
    timeout_header: str | None
    content_type: str
    accept: str


@dataclass
class ToySilo:
    url: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    # idempotency key -> (fingerprint of the request, status, reply body)
    records: dict[str, tuple[tuple[Any, ...], int, dict[str, Any]]] = field(default_factory=dict)
    told: dict[str, tuple[str, str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    reply_media: str | None = None  # answer in this media type whatever Accept says

    @property
    def keys_seen(self) -> list[str | None]:
        return [s.idempotency_key for s in self.seen]

    async def on_call(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, tell=False)

    async def on_tell(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, tell=True)

    async def _handle(self, request: web.Request, *, tell: bool) -> web.StreamResponse:
        raw = await request.read()
        media = request.content_type
        accept = request.headers.get("Accept", wire.JSON)
        reply_media = self.reply_media or (wire.MSGPACK if accept == wire.MSGPACK else wire.JSON)
        try:
            args = wire.decode_body(raw, media) if media in (wire.JSON, wire.MSGPACK) else None
        except ValueError:
            args = None
        seen = Seen(
            tell=tell,
            type_name=request.match_info["type"],
            key=request.match_info["key"],
            method=request.match_info["method"],
            args=args,
            idempotency_key=request.headers.get(wire.IDEMPOTENCY_KEY),
            timeout_header=request.headers.get(wire.TIMEOUT_HEADER),
            content_type=media,
            accept=accept,
        )
        self.seen.append(seen)

        fault = self.faults.pop(0) if self.faults else None
        if isinstance(fault, tuple):
            status, content_type, raw_reply = fault
            return web.Response(status=status, body=raw_reply, content_type=content_type)
        if fault == "hang":
            await self.release.wait()
        if fault == "drop-before":
            return self._drop(request)
        if fault in ("503", "504", "storage"):
            error: errors.BayouError = {
                "503": errors.Unavailable("silo is starting"),
                "504": errors.CallTimeout("turn did not finish in time"),
                "storage": errors.StorageError("store unavailable"),
            }[fault]
            return self._reply(error.status, error.to_wire(), reply_media)

        if media not in (wire.JSON, wire.MSGPACK):
            error = errors.UnsupportedMediaType(f"cannot read {media!r}")
            return self._reply(error.status, error.to_wire(), reply_media)
        if not isinstance(args, dict):
            error = errors.BadRequest("body must be an object of named arguments")
            return self._reply(error.status, error.to_wire(), reply_media)

        fingerprint = (tell, seen.type_name, seen.key, seen.method, json.dumps(args, default=repr))
        idem = seen.idempotency_key
        if idem is not None and idem in self.records:
            recorded_fingerprint, status, body = self.records[idem]
            if recorded_fingerprint != fingerprint:
                error = errors.IdempotencyKeyReused(f"key {idem!r} was used for another request")
                return self._reply(error.status, error.to_wire(), reply_media)
            response = self._reply(status, body, reply_media)
        else:
            status, body = self._run(seen, args)
            if idem is not None and status in (200, 202, 500):  # terminal outcomes are recorded
                self.records[idem] = (fingerprint, status, body)
            response = self._reply(status, body, reply_media)

        if fault == "drop-after":  # applied and recorded, but the reply is lost
            return self._drop(request)
        return response

    def _run(self, seen: Seen, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Apply one request for the first time: (status, reply body)."""
        try:
            if seen.type_name != "counter":
                raise errors.UnknownActorType(f"no actor type {seen.type_name!r}")
            if seen.tell:
                if seen.method != "add":
                    raise errors.UnknownMethod(f"counter has no handler {seen.method!r}")
                message_id = seen.idempotency_key or uuid.uuid4().hex
                self.told[message_id] = (seen.key, seen.method, args)
                return 202, {"message_id": message_id}
            return 200, {"result": self._invoke(seen.key, seen.method, args)}
        except errors.BayouError as exc:
            return exc.status, exc.to_wire()

    def _invoke(self, key: str, method: str, args: dict[str, Any]) -> Any:
        if method == "add":
            n = args.get("n")
            if set(args) != {"n"} or not isinstance(n, int) or isinstance(n, bool):
                raise errors.InvalidArguments(
                    "invalid arguments for counter.add",
                    [{"field": "n", "message": "an integer is required"}],
                )
            if n < 0:
                raise errors.ActorError("n must not be negative", {"exception": "ValueError"})
            self.counters[key] = self.counters.get(key, 0) + n
            return self.counters[key]
        if method == "get":
            return self.counters.get(key, 0)
        if method == "echo":
            return args
        if method == "raise":
            cls = errors.error_class(args["type"])
            raise cls(args["message"], args.get("detail"))
        raise errors.UnknownMethod(f"counter has no handler {method!r}")

    @staticmethod
    def _reply(status: int, body: Any, media: str) -> web.Response:
        return web.Response(status=status, body=wire.encode_body(body, media), content_type=media)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=200)


@pytest.fixture
async def silo() -> AsyncIterator[ToySilo]:
    toy = ToySilo()
    app = web.Application()
    app.router.add_post(wire.CALL_ROUTE, toy.on_call)
    app.router.add_post(wire.TELL_ROUTE, toy.on_tell)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    toy.url = f"http://{host}:{port}"
    try:
        yield toy
    finally:
        toy.release.set()  # let hung handlers finish so shutdown is prompt
        await runner.cleanup()


@pytest.fixture
async def client(silo: ToySilo) -> AsyncIterator[Client]:
    async with Client(silo.url, timeout=5.0) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def all_error_classes() -> list[type[errors.BayouError]]:
    found: list[type[errors.BayouError]] = []
    pending: list[type[errors.BayouError]] = [errors.BayouError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


def is_generated_key(value: str | None) -> bool:
    return value is not None and len(value) == 32 and int(value, 16) >= 0


# --------------------------------------------------------------------------- refs


async def test_class_ref_maps_positional_args_to_handler_params(
    client: Client, silo: ToySilo
) -> None:
    alice = client.ref(Counter, "alice")
    assert (alice.type_name, alice.key) == ("counter", "alice")

    assert await alice.add(10) == 10
    assert silo.seen[-1].args == {"n": 10}
    assert await alice.add(n=5) == 15
    assert silo.seen[-1].args == {"n": 5}
    assert await alice.get() == 15
    assert silo.seen[-1].args == {}
    assert silo.counters == {"alice": 15}


async def test_class_ref_checks_method_and_arity_before_sending(
    client: Client, silo: ToySilo
) -> None:
    alice = client.ref(Counter, "alice")
    with pytest.raises(AttributeError, match="no handler 'nope'"):
        _ = alice.nope
    with pytest.raises(AttributeError):
        alice.handler("nope")
    with pytest.raises(TypeError, match=r"takes 1 argument\(s\) \(n\) but 2"):
        _ = alice.add(1, 2)
    with pytest.raises(TypeError, match="multiple values for argument 'n'"):
        _ = alice.add(1, n=2)
    with pytest.raises(TypeError, match="takes 0 argument"):
        _ = alice.get(1)
    assert silo.seen == []


async def test_string_ref_takes_keyword_arguments_only(client: Client, silo: ToySilo) -> None:
    bob = client.ref("counter", "bob")
    assert await bob.add(n=3) == 3
    with pytest.raises(TypeError, match="keyword arguments only"):
        _ = bob.add(3)
    assert len(silo.seen) == 1
    # Nothing is known client-side about a type given by name: the silo decides.
    with pytest.raises(errors.UnknownMethod):
        await bob.nope()


async def test_handler_reaches_names_that_collide_with_ref_attributes(
    client: Client, silo: ToySilo
) -> None:
    ref = client.ref("counter", "k")
    with pytest.raises(errors.UnknownMethod):
        await ref.handler("key")()
    assert silo.seen[-1].method == "key"
    with pytest.raises(AttributeError):
        _ = ref._private


async def test_ref_repr_and_options(client: Client, silo: ToySilo) -> None:
    alice = client.ref(Counter, "alice")
    assert repr(alice) == "ActorRef('counter', 'alice')"
    once = alice.options(idempotency_key="op-1", timeout=2.0)
    assert repr(once) == "ActorRef('counter', 'alice', idempotency_key='op-1', timeout=2.0)"
    assert "counter.add" in repr(alice.add)

    # The same key twice is one operation: the second answer is the recorded one.
    assert await once.add(3) == 3
    assert await once.add(3) == 3
    assert silo.counters == {"alice": 3}
    assert silo.keys_seen == ["op-1", "op-1"]
    assert 0 < float(silo.seen[-1].timeout_header or "0") <= 2.0

    with pytest.raises(errors.IdempotencyKeyReused):
        await once.add(4)
    with pytest.raises(errors.BadRequest):
        alice.options(idempotency_key="")
    with pytest.raises(ValueError):
        alice.options(timeout=0)


async def test_idempotency_keys_are_fresh_per_call_and_skipped_for_known_queries(
    client: Client, silo: ToySilo
) -> None:
    alice = client.ref(Counter, "alice")
    await alice.add(1)
    await alice.add(1)
    await alice.get()
    await client.ref("counter", "alice").get()  # by name: may be exclusive, so keyed
    first, second, query_key, by_name = silo.keys_seen
    assert is_generated_key(first) and is_generated_key(second) and first != second
    assert query_key is None
    assert is_generated_key(by_name)


async def test_keys_are_percent_encoded_and_round_trip(client: Client, silo: ToySilo) -> None:
    key = "users/ünï cödé ✓/?#%+&=;"
    assert await client.ref(Counter, key).add(2) == 2
    assert silo.seen[-1].key == key
    assert silo.counters == {key: 2}
    assert await client.call("counter", key, "get") == 2
    assert await client.ref("counter", key).tell.add(n=1)
    assert silo.seen[-1].key == key


async def test_invalid_keys_are_rejected_before_sending(client: Client, silo: ToySilo) -> None:
    for bad in ["", "a\x00b", "tab\there", "x" * (wire.MAX_KEY_LENGTH + 1)]:
        with pytest.raises(errors.BadRequest):
            client.ref(Counter, bad)
        with pytest.raises(errors.BadRequest):
            await client.call("counter", bad, "get")
    with pytest.raises(errors.BadRequest):
        await client.call("counter", "k", "add", {"n": 1}, idempotency_key="a\nb")
    with pytest.raises(errors.BadRequest):
        client.ref("Not A Type", "k")
    with pytest.raises(TypeError, match="not decorated"):
        client.ref(CounterState, "k")  # type: ignore[arg-type]
    assert silo.seen == []


# --------------------------------------------------------------------------- media types


@pytest.mark.parametrize("media_type", [wire.MSGPACK, wire.JSON])
async def test_media_types(silo: ToySilo, media_type: str) -> None:
    value = {"s": "ünï", "xs": [1, 2, 3], "f": 1.5, "none": None, "nested": {"ok": True}}
    async with Client(silo.url, media_type=media_type) as c:
        assert await c.call("counter", "k", "echo", value) == value
        assert await c.ref(Counter, "k").add(7) == 7
    assert {(s.content_type, s.accept) for s in silo.seen} == {(media_type, media_type)}


async def test_msgpack_keeps_bytes(silo: ToySilo) -> None:
    async with Client(silo.url, media_type=wire.MSGPACK) as c:
        assert await c.call("counter", "k", "echo", {"b": b"\x00\xff"}) == {"b": b"\x00\xff"}


async def test_reply_is_decoded_by_its_own_content_type(silo: ToySilo) -> None:
    silo.reply_media = wire.JSON
    async with Client(silo.url, media_type=wire.MSGPACK) as c:
        assert await c.ref(Counter, "k").add(2) == 2
        with pytest.raises(errors.UnknownMethod):
            await c.call("counter", "k", "nope")


async def test_args_may_be_any_mapping(client: Client, silo: ToySilo) -> None:
    assert await client.call("counter", "k", "add", MappingProxyType({"n": 4})) == 4
    assert silo.seen[-1].args == {"n": 4}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
async def test_every_error_type_is_reraised_as_its_class(
    silo: ToySilo, cls: type[errors.BayouError]
) -> None:
    detail = {"why": cls.__name__, "n": [1, 2]}
    async with Client(silo.url, max_attempts=1) as c:
        with pytest.raises(cls) as caught:
            await c.call(
                "counter", "k", "raise", {"type": cls.__name__, "message": "m!", "detail": detail}
            )
    assert type(caught.value) is cls
    assert caught.value.message == "m!"
    assert caught.value.detail == detail


async def test_request_errors_and_actor_errors_are_not_retried(
    client: Client, silo: ToySilo
) -> None:
    alice = client.ref("counter", "alice")

    with pytest.raises(errors.UnknownMethod):
        await alice.nope()
    with pytest.raises(errors.UnknownActorType):
        await client.call("nothing", "k", "add", {"n": 1})
    with pytest.raises(errors.InvalidArguments) as invalid:
        await alice.add(n="ten")
    assert invalid.value.status == 422
    assert invalid.value.detail == [{"field": "n", "message": "an integer is required"}]
    with pytest.raises(errors.ActorError) as failed:
        await alice.add(n=-1)
    assert failed.value.exception_type == "ValueError"
    await alice.options(idempotency_key="k1").add(n=1)
    with pytest.raises(errors.IdempotencyKeyReused):
        await alice.options(idempotency_key="k1").add(n=2)

    # Six logical calls, six requests: none of them was retried.
    assert len(silo.seen) == 6
    assert silo.counters == {"alice": 1}


async def test_unexpected_success_shapes_are_errors(client: Client, silo: ToySilo) -> None:
    alice = client.ref(Counter, "alice")
    silo.faults = [
        (200, wire.JSON, b'{"nope": 1}'),
        (200, wire.JSON, b"[1, 2]"),
        (200, wire.MSGPACK, b"\xc1"),
        (200, "text/plain", b"hello"),
        (202, wire.JSON, b'{"message_id": 5}'),
    ]
    for expected in ["'result'", "'result'", "not valid", "not valid"]:
        with pytest.raises(errors.BayouError, match=expected) as caught:
            await alice.add(1)
        assert type(caught.value) is errors.BayouError
    with pytest.raises(errors.BayouError, match="'message_id'"):
        await alice.tell.add(1)
    assert len(silo.seen) == 5


async def test_unstructured_error_bodies(silo: ToySilo) -> None:
    silo.faults = [(503, "text/plain", b"overloaded"), (502, "text/html", b"<h1>bad gateway</h1>")]
    async with Client(silo.url) as c:
        # The 503 is retried (Unavailable), the 502 is not a contract error and is not.
        with pytest.raises(errors.BayouError, match="502") as caught:
            await c.ref(Counter, "k").add(1)
    assert type(caught.value) is errors.BayouError
    assert len(silo.seen) == 2


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("fault", ["drop-before", "drop-after", "503", "504", "storage"])
async def test_retries_reuse_one_idempotency_key_and_apply_once(
    client: Client, silo: ToySilo, fault: str
) -> None:
    silo.faults = [fault, fault, fault]
    assert await client.ref(Counter, "alice").add(5) == 5
    assert silo.counters == {"alice": 5}
    assert len(silo.seen) == 4
    (key,) = set(silo.keys_seen)
    assert is_generated_key(key)


async def test_lost_replies_are_answered_from_the_record(client: Client, silo: ToySilo) -> None:
    # Every attempt but the last applies (once) and loses the reply.
    silo.faults = ["drop-after"] * 4
    assert await client.call("counter", "alice", "add", {"n": 2}) == 2
    assert silo.counters == {"alice": 2}
    assert len(silo.seen) == 5
    assert len(set(silo.keys_seen)) == 1


async def test_caller_key_is_reused_on_retries(client: Client, silo: ToySilo) -> None:
    silo.faults = ["drop-after"]
    assert await client.call("counter", "a", "add", {"n": 1}, idempotency_key="mine") == 1
    assert silo.keys_seen == ["mine", "mine"]


async def test_attempts_are_bounded(silo: ToySilo) -> None:
    silo.faults = ["503"] * 10
    async with Client(silo.url, max_attempts=3) as c:
        with pytest.raises(errors.Unavailable, match="starting"):
            await c.ref(Counter, "alice").add(1)
    assert len(silo.seen) == 3
    assert silo.counters == {}


async def test_dead_port_raises_silo_unreachable(silo: ToySilo) -> None:
    async with Client(f"http://127.0.0.1:{free_port()}", max_attempts=3) as c:
        with pytest.raises(errors.SiloUnreachable) as caught:
            await c.ref(Counter, "alice").add(1)
    assert isinstance(caught.value, ConnectionError)
    assert caught.value.detail["attempts"] == 3
    assert is_generated_key(caught.value.detail["idempotency_key"])


async def test_dropped_connections_until_attempts_run_out(silo: ToySilo) -> None:
    silo.faults = ["drop-before"] * 10
    async with Client(silo.url, max_attempts=2) as c:
        with pytest.raises(errors.SiloUnreachable):
            await c.ref(Counter, "alice").add(1)
    assert len(silo.seen) == 2


# --------------------------------------------------------------------------- deadlines


async def test_server_that_never_answers_times_out(silo: ToySilo) -> None:
    silo.faults = ["hang"] * 10
    timeout = 0.5
    async with Client(silo.url, timeout=timeout) as c:
        started = time.monotonic()
        with pytest.raises(errors.CallTimeout) as caught:
            await c.ref(Counter, "alice").add(1)
        elapsed = time.monotonic() - started
    assert isinstance(caught.value, TimeoutError)
    assert elapsed < timeout + 0.5
    assert caught.value.detail["idempotency_key"] == silo.keys_seen[0]
    assert 0 < float(silo.seen[0].timeout_header or "0") <= timeout


async def test_per_call_timeout_overrides_the_default(client: Client, silo: ToySilo) -> None:
    silo.faults = ["hang"]
    started = time.monotonic()
    with pytest.raises(errors.CallTimeout):
        await client.call("counter", "a", "get", timeout=0.3)
    assert time.monotonic() - started < 0.3 + 0.5
    await client.call("counter", "a", "get", timeout=2.5)
    assert 2.0 < float(silo.seen[-1].timeout_header or "0") <= 2.5


async def test_deadline_bounds_retries(silo: ToySilo) -> None:
    silo.faults = ["503"] * 1000
    timeout = 0.4
    async with Client(silo.url, timeout=timeout, max_attempts=1000) as c:
        started = time.monotonic()
        with pytest.raises(errors.CallTimeout) as caught:
            await c.ref(Counter, "alice").add(1)
        elapsed = time.monotonic() - started
    assert elapsed < timeout + 0.5
    assert len(silo.seen) >= 2
    assert isinstance(caught.value.__cause__, errors.Unavailable)
    # The header tells the silo how long is left, shrinking across attempts.
    budgets = [float(s.timeout_header or "0") for s in silo.seen]
    assert budgets == sorted(budgets, reverse=True)
    assert budgets[0] <= timeout


# --------------------------------------------------------------------------- tells


async def test_tell_returns_the_stored_message_id(client: Client, silo: ToySilo) -> None:
    alice = client.ref(Counter, "alice")
    message_id = await alice.tell.add(4)
    assert silo.told == {message_id: ("alice", "add", {"n": 4})}
    assert silo.seen[-1].tell
    assert is_generated_key(silo.seen[-1].idempotency_key)

    assert await alice.options(idempotency_key="t-1").tell.add(1) == "t-1"
    assert await alice.options(idempotency_key="t-1").tell.add(1) == "t-1"
    assert await client.tell("counter", "alice", "add", {"n": 1}, idempotency_key="t-2") == "t-2"
    assert set(silo.told) == {message_id, "t-1", "t-2"}


async def test_tell_is_retried_with_the_same_key(client: Client, silo: ToySilo) -> None:
    silo.faults = ["drop-after", "503"]
    message_id = await client.ref("counter", "alice").tell.add(n=1)
    assert silo.keys_seen == [message_id] * 3
    assert list(silo.told) == [message_id]


async def test_queries_and_unknown_handlers_cannot_be_told(client: Client, silo: ToySilo) -> None:
    alice = client.ref(Counter, "alice")
    with pytest.raises(TypeError, match="query"):
        _ = alice.tell.get
    with pytest.raises(AttributeError):
        _ = alice.tell.nope
    with pytest.raises(TypeError, match="keyword"):
        _ = client.ref("counter", "alice").tell.add(1)
    assert "tell counter.add" in repr(alice.tell.add)
    assert silo.seen == []


# --------------------------------------------------------------------------- lifecycle


async def test_client_without_context_manager(silo: ToySilo) -> None:
    c = Client(silo.url + "/")
    try:
        assert await c.ref(Counter, "a").add(1) == 1
    finally:
        await c.close()
    with pytest.raises(RuntimeError, match="closed"):
        await c.ref(Counter, "a").add(1)
    await c.close()  # idempotent


async def test_passed_in_session_is_reused_and_left_open(silo: ToySilo) -> None:
    async with aiohttp.ClientSession() as session:
        async with Client(silo.url, session=session) as c:
            assert await c.call("counter", "a", "add", {"n": 1}) == 1
        assert not session.closed
        async with session.get(silo.url + "/nothing") as response:
            assert response.status == 404


@pytest.mark.parametrize(
    "make",
    [
        lambda: Client("127.0.0.1:8080"),
        lambda: Client("http://h", timeout=0),
        lambda: Client("http://h", max_attempts=0),
        lambda: Client("http://h", media_type="text/plain"),
    ],
)
def test_constructor_rejects_bad_settings(make: Callable[[], Client]) -> None:
    with pytest.raises(ValueError):
        make()


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(first=0.05, cap=1.0)
    for retry, step in [(0, 0.05), (1, 0.1), (2, 0.2), (4, 0.8), (5, 1.0), (500, 1.0)]:
        delays = [backoff.delay(retry) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1


def test_public_api() -> None:
    import bayou.client

    assert bayou.client.__all__ == ["ActorRef", "Client"]
    assert bayou.client.ActorRef is ActorRef
