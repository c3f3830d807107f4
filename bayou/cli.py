"""The ``bayou`` command: run a silo, or call an actor from the shell."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import signal
import sys
import urllib.parse
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bayou.runtime.silo import Silo

DEFAULT_URL = "http://127.0.0.1:8080"

# Allocations between two young-generation collections in a silo process (Python's
# default is 700). A turn allocates a few dozen short-lived objects, nearly all freed by
# their reference counts, so the default collects every few calls and walks every call in
# flight each time: a tenth of a silo's CPU. Garbage in cycles waits a little longer.
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Collect less often, and never walk what start-up made (modules, classes, the app):
    it lives as long as the process. For a silo process, once it has started."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def load_app(target: str) -> Any:
    """Import ``module:attribute`` and return the attribute (an ``App``)."""
    from bayou.runtime.app import App

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"--app must look like module:attribute, got {target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise SystemExit(f"{target} is not a bayou.App (got {type(app).__name__})")
    return app


async def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from bayou.runtime import logs
    from bayou.runtime.settings import settings_from_env
    from bayou.runtime.silo import Silo
    from bayou.storage.factory import open_storage

    app = load_app(args.app)
    try:
        app = app.with_settings(settings_from_env(app.settings, os.environ))
    except ValidationError as exc:
        raise SystemExit(f"bad BAYOU_* setting in the environment:\n{exc}") from None
    membership = None
    if args.redis:
        from bayou.placement.redis_membership import RedisMembership

        try:
            storage = open_storage(args.redis, cluster=args.cluster)
            membership = RedisMembership(args.redis, args.cluster)
        except ValueError as exc:  # a URL or cluster name bayou cannot use: say which
            raise SystemExit(f"--redis {_redacted(args.redis)}: {exc}") from None
    else:
        storage = open_storage(args.data)
    name = os.environ.get("BAYOU_SILO_NAME") or os.environ.get("POD_NAME") or "silo"
    silo = Silo(
        app,
        storage,
        membership=membership,
        cluster=args.cluster if args.redis else None,
        host=args.host,
        port=args.port,
        advertise_host=args.advertise_host or os.environ.get("POD_IP"),
        # A restarted process is a new silo: membership never lets a dead identity return.
        silo_id=f"{name}-{uuid.uuid4().hex[:8]}",
        secret=os.environ.get("BAYOU_SECRET") or None,
    )
    logs.bind_silo(silo.silo_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await silo.start()
    tune_gc()
    where = (
        f"cluster {args.cluster} at {_redacted(args.redis)}" if args.redis else f"data {args.data}"
    )
    print(f"bayou silo {silo.silo_id} serving on {silo.address} ({where})", flush=True)
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(silo.failed.wait())
    await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    if silo.failed.is_set():
        print(f"bayou silo {silo.silo_id} stopped serving: {silo.agent.lost}", flush=True)
        return 3
    await _drain(silo)
    return 0


async def _drain(silo: Silo) -> None:
    """``silo.stop()``, with a bar of the activations handed off when stderr is a terminal."""
    from bayou.progress import ProgressBar

    bar = ProgressBar("draining: activations handed off", len(silo.catalog))
    if not bar.enabled or not len(silo.catalog):
        await silo.stop()
        return
    stopping = asyncio.ensure_future(silo.stop())
    while not stopping.done():
        bar.update(bar.total - len(silo.catalog))
        await asyncio.wait({stopping}, timeout=0.1)
    bar.update(bar.total - len(silo.catalog))
    bar.close()
    await stopping


def _redacted(url: str) -> str:
    """A Redis URL fit for logs: the password (if any) replaced."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _env_port() -> int:
    raw = os.environ.get("BAYOU_PORT", "8080")
    try:
        return int(raw)
    except ValueError:
        # Kubernetes injects BAYOU_PORT=tcp://... for a Service named "bayou" when service
        # links are on: say so instead of failing with a traceback.
        raise SystemExit(
            f"BAYOU_PORT must be a port number, got {raw!r} (in Kubernetes, a Service named "
            "'bayou' injects this; set enableServiceLinks: false or BAYOU_PORT explicitly)"
        ) from None


def _silo(args: argparse.Namespace) -> int:
    import uvloop

    from bayou.runtime import logs

    # JSON lines unless stderr is a terminal; BAYOU_LOG_FORMAT=json|text forces one.
    log_format = os.environ.get("BAYOU_LOG_FORMAT", "").lower()
    logs.configure_logging(
        os.environ.get("BAYOU_LOG_LEVEL", "INFO"),
        json_lines={"json": True, "text": False}.get(log_format),
    )
    code: int = uvloop.run(_serve(args))
    return code


async def _call_actor(args: argparse.Namespace) -> Any:
    from bayou.client import Client

    type_name, sep, key = args.target.partition("/")
    if not sep or not key:
        raise SystemExit(f"target must look like TYPE/KEY, got {args.target!r}")
    try:
        call_args = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"arguments must be a JSON object: {exc}") from None
    if not isinstance(call_args, dict):
        raise SystemExit("arguments must be a JSON object, e.g. '{\"n\": 1}'")
    # A person at a prompt wants to hear soon that nothing answers, not at the deadline.
    secret = os.environ.get("BAYOU_SECRET") or None
    async with Client(args.url, timeout=args.timeout, max_attempts=6, secret=secret) as client:
        if args.tell:
            return await client.tell(
                type_name, key, args.method, call_args, idempotency_key=args.idempotency_key
            )
        return await client.call(
            type_name, key, args.method, call_args, idempotency_key=args.idempotency_key
        )


def _call(args: argparse.Namespace) -> int:
    from bayou.errors import BayouError

    try:
        result = asyncio.run(_call_actor(args))
    except BayouError as exc:
        print(json.dumps(exc.to_wire()), file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


async def _read_actor(args: argparse.Namespace) -> tuple[int, Any]:
    """``GET /v1/actors/{type}/{key}`` on the silo at ``--url``: the status and the body."""
    import aiohttp
    import yarl

    type_name, sep, key = args.target.partition("/")
    if not sep or not key:
        raise SystemExit(f"target must look like TYPE/KEY, got {args.target!r}")
    quote = urllib.parse.quote  # keys are one path segment: "a/b" travels as a%2Fb
    path = f"/v1/actors/{quote(type_name, safe='')}/{quote(key, safe='')}"
    url = yarl.URL(args.url.rstrip("/") + path, encoded=True)
    query = {"activate": "true"} if args.activate else {}
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, params=query, headers={"Accept": "application/json"}) as response,
    ):
        return response.status, await response.json(content_type=None)


def _inspect(args: argparse.Namespace) -> int:
    import aiohttp

    try:
        status, body = asyncio.run(_read_actor(args))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        print(f"cannot inspect {args.target} at {args.url}: {reason}", file=sys.stderr)
        return 1
    if status != 200:
        print(json.dumps(body), file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.json else _describe_actor(body))
    return 0


def _describe_actor(actor: dict[str, Any]) -> str:
    """The inspection of one actor, for a person."""
    what = f"{actor['type']}/{actor['key']} ({actor['kind']}, partition {actor['partition']})"
    rows = [("actor", what)]
    owner = actor.get("owner")
    if owner:
        rows.append(("owner", f"{owner['silo']} at {owner['address']}"))
    status = str(actor.get("status"))
    if actor.get("epoch") is not None:
        status += f", epoch {actor['epoch']}"
    if actor.get("idle_seconds") is not None:
        status += f", idle {actor['idle_seconds']:.1f}s"
    rows.append(("status", status))
    if "seq" in actor:
        journal = f"seq {actor['seq']}, snapshot at {actor['snapshot_seq']}, "
        journal += f"{actor['journal_length']} records since"
        if actor.get("replayed_on_load") is not None:
            journal += f" (replayed {actor['replayed_on_load']} on load)"
        rows.append(("journal", journal))
    if "inbox" in actor:
        rows.append(("inbox", f"{actor['inbox']} tells waiting"))
    reminders = actor.get("reminders") or []
    if reminders or "reminders" in actor:
        rows.append(("reminders", ", ".join(r["name"] for r in reminders) or "none"))
    if actor.get("workflow_runs"):
        rows.append(("workflows", ", ".join(actor["workflow_runs"])))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    if actor.get("kind") != "stateless":
        source = actor.get("state_source")
        note = {
            "memory": "",
            "snapshot": " (from the last snapshot: the records since are not applied; "
            "--activate to load it)",
            "none": " (never written: a first call starts from the default state)",
        }.get(str(source), "")
        lines.append(f"state{note}:")
        lines.append(json.dumps(actor.get("state"), indent=2, ensure_ascii=False))
    return "\n".join(lines)


async def _read_status(args: argparse.Namespace) -> list[list[str]]:
    from bayou.placement.membership import SiloStatus
    from bayou.placement.redis_membership import RedisMembership
    from bayou.placement.ring import PartitionRing

    try:
        membership = RedisMembership(args.redis, args.cluster)
    except ValueError as exc:
        raise SystemExit(f"--redis {_redacted(args.redis)}: {exc}") from None
    await membership.open()
    try:
        view = await membership.read()
    finally:
        await membership.close()
    ring = PartitionRing(sorted(m.silo for m in view.active()), args.partitions)
    rows = [["SILO", "ADDRESS", "STATUS", "LEASE", "PARTITIONS"]]
    for member in sorted(view.members, key=lambda m: (m.status is SiloStatus.DEAD, m.silo)):
        lease = member.lease_expires - view.now
        rows.append(
            [
                member.silo,
                member.address,
                str(member.status),
                "-" if member.status is SiloStatus.DEAD else f"{lease:+.1f}s",
                str(len(ring.partitions_of(member.silo))),
            ]
        )
    return rows


def _status(args: argparse.Namespace) -> int:
    from bayou.errors import BayouError

    if not args.redis:
        print("bayou status needs --redis URL (or BAYOU_REDIS_URL)", file=sys.stderr)
        return 2
    try:
        rows = asyncio.run(_read_status(args))
    except BayouError as exc:
        print(f"cannot read membership: {exc}", file=sys.stderr)
        return 1
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"cluster {args.cluster}: {len(rows) - 1} members")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


def _bench(argv: Sequence[str]) -> int:
    """Delegate to the benchmark harness, which lives beside the package in a checkout."""
    try:
        from bench.harness import main as bench_main
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            from bench.harness import main as bench_main
        except ImportError:
            print(
                "bayou bench needs a source checkout of bayou (the bench/ folder)", file=sys.stderr
            )
            return 2
    return bench_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayou", description="Durable virtual actors.")
    commands = parser.add_subparsers(dest="command", required=True)

    silo = commands.add_parser("silo", help="run a silo hosting an app's actors")
    silo.add_argument(
        "--app",
        default=os.environ.get("BAYOU_APP"),
        required=not os.environ.get("BAYOU_APP"),
        help="module:attribute of a bayou.App (env BAYOU_APP)",
    )
    silo.add_argument("--host", default=os.environ.get("BAYOU_HOST", "127.0.0.1"))
    silo.add_argument("--port", type=int, default=_env_port(), help="(env BAYOU_PORT)")
    silo.add_argument("--advertise-host", default=os.environ.get("BAYOU_ADVERTISE_HOST"))
    silo.add_argument(
        "--data",
        default=os.environ.get("BAYOU_DATA", "bayou-data/silo.db"),
        help="embedded store file, or memory:// (env BAYOU_DATA); unused with --redis",
    )
    _cluster_args(silo)
    silo.set_defaults(run=_silo)

    status = commands.add_parser("status", help="print a cluster's members and partitions")
    _cluster_args(status)
    status.add_argument("--partitions", type=int, default=1024)
    status.set_defaults(run=_status)

    call = commands.add_parser("call", help="call an actor: bayou call counter/k add '{\"n\": 1}'")
    call.add_argument("target", help="TYPE/KEY")
    call.add_argument("method")
    call.add_argument("args", nargs="?", default="{}", help="JSON object of named arguments")
    call.add_argument("--url", default=os.environ.get("BAYOU_URL", DEFAULT_URL))
    call.add_argument("--tell", action="store_true", help="durable one-way message (202)")
    call.add_argument("--idempotency-key")
    call.add_argument("--timeout", type=float, default=30.0)
    call.set_defaults(run=_call)

    inspect = commands.add_parser(
        "inspect", help="show an actor: owner, status, journal, state (bayou inspect counter/k)"
    )
    inspect.add_argument("target", help="TYPE/KEY")
    inspect.add_argument("--url", default=os.environ.get("BAYOU_URL", DEFAULT_URL))
    inspect.add_argument(
        "--activate", action="store_true", help="load the actor if it is not in memory"
    )
    inspect.add_argument("--json", action="store_true", help="print the JSON document")
    inspect.add_argument("--timeout", type=float, default=30.0)
    inspect.set_defaults(run=_inspect)

    # Listed for --help only: main() hands `bayou bench ...` to the harness's own parser.
    commands.add_parser(
        "bench", help="run the benchmark harness: bayou bench [--quick|--smoke] [--only call]"
    )
    return parser


def _cluster_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis",
        default=os.environ.get("BAYOU_REDIS_URL"),
        help="join the cluster whose state lives in this Redis (env BAYOU_REDIS_URL): "
        "redis://host:6379/0, redis+cluster://host:port,.../ or "
        "redis+sentinel://host:26379,.../service",
    )
    parser.add_argument(
        "--cluster",
        default=os.environ.get("BAYOU_CLUSTER", "default"),
        help="cluster name: silos with the same Redis and name form one ring",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
