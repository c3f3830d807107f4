"""``python -m bench.peers [--runs 3] [--duration 5] [--only restate,ray]``: bayou's
``call`` workload next to Ray's actors and Restate's virtual objects, in the same run.

Each comparison run measures, one after the other on this machine (the order rotated from
run to run, so slow drift of a shared machine does not always hit the same system):

- bayou: the ``call`` scenario of ``make bench`` (``bench.scenarios.calls``: its warm-up,
  its clients, the harness's silo on a fresh redis-server with AOF everysec): 10,000 warm
  actors, durable ``add(1)``, Python client over the link and over HTTP, and a plain
  aiohttp client, at c=1 and c=256;
- Restate: ``restate-server`` (its data in a temporary directory, every listener on a free
  loopback port, telemetry off) and the Python SDK's virtual object ``counter``
  (``restate_app.py``) under one hypercorn process with uvloop, registered through the
  admin API; 10,000 keys warmed with one call each, then ``add`` through the ingress by
  the same load generator (``bench.loadgen`` raw HTTP) at c=1 and c=256;
- Ray: ``ray_driver.py`` under the Ray virtualenv's interpreter, in a network namespace of
  its own that has only a loopback interface (when ``unshare`` works here): a local Ray
  instance, a pool of actors holding the 10,000 counters, called from the driver.

Each figure also has its CPU cost per call (servers, client, total), which a machine shared
with other work disturbs far less than calls/s. Ratios are taken within each run (bayou /
peer for calls/s; peer / bayou for p50 and CPU per call: more than 1 always means bayou is
ahead), then the median over the runs. Everything started is ended by its pid (Ray: by the
process group the driver was started in).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.config import Mode
from bench.context import Bench
from bench.loadgen import LoadSpec
from bench.peers import cpu, install, render
from bench.procs import ROOT, free_port, wait_http
from bench.progress import Progress
from bench.report import machine, versions
from bench.scenarios import calls

PEERS = ("restate", "ray")

# (label, peer, peer row, bayou row, figure); calls/s ratios are bayou / peer, latency
# ratios peer / bayou: more than 1 is bayou ahead either way.
PAIRS = (
    ("restate", "c256", "raw-http c256", "throughput"),
    ("restate", "c256", "bayou-link c256", "throughput"),
    ("restate", "c1", "raw-http c1", "p50_ms"),
    ("restate", "c1", "bayou-link c1", "p50_ms"),
    ("ray", "c256", "bayou-link c256", "throughput"),
    ("ray", "c256", "raw-http c256", "throughput"),
    ("ray", "c1", "bayou-link c1", "p50_ms"),
    ("ray", "c1", "raw-http c1", "p50_ms"),
    ("restate", "c256", "raw-http c256", "cpu"),
    ("ray", "c256", "bayou-link c256", "cpu"),
)

# Which pairing each goal is judged on: the same client kind on both sides (plain HTTP
# for Restate, whose clients call its HTTP ingress; each side's own Python client for Ray).
GOALS = (
    (
        "bayou ahead of Restate's virtual objects by >= 3x (calls/s, c=256, plain HTTP both)",
        "restate c256 throughput vs raw-http c256",
        3.0,
    ),
    (
        "bayou ahead of Ray's non-durable actor calls (calls/s, c=256, each one's Python client)",
        "ray c256 throughput vs bayou-link c256",
        1.0,
    ),
)


FIGURE_NAMES = {"throughput": "throughput", "p50_ms": "p50", "cpu": "CPU per call"}


def pair_name(peer: str, level: str, bayou_row: str, figure: str) -> str:
    return f"{peer} {level} {FIGURE_NAMES[figure]} vs {bayou_row}"


def _figure(row: dict[str, Any], figure: str) -> float:
    if figure == "cpu":
        return float((row.get("cpu_ms_per_call") or {}).get("total") or 0)
    return float(row.get(figure) or 0)


def pair_ratio(bayou: dict[str, Any], peer: dict[str, Any], figure: str) -> float | None:
    """bayou / peer for calls/s; peer / bayou for latency and CPU per call."""
    mine, theirs = _figure(bayou, figure), _figure(peer, figure)
    if figure == "throughput":
        return round(mine / theirs, 3) if theirs > 0 else None
    return round(theirs / mine, 3) if mine > 0 else None


# -- bayou ----------------------------------------------------------------------------------


def timed_with_cpu(bench: Bench, spec: LoadSpec, label: str) -> dict[str, Any]:
    """``bench.timed``, plus the CPU each call cost: the servers (every process the bench
    started and still runs, with its children) and the client (the load generator)."""
    children = [child for child in bench.procs.children if child.alive()]
    before = {child.name: cpu.tree(child.pid) for child in children}
    client = cpu.reaped_children()
    row = bench.timed(spec, label)
    each = {child.name: cpu.tree(child.pid) - before[child.name] for child in children}
    client = cpu.reaped_children() - client
    servers = sum(each.values())

    def ms(seconds: float) -> float:
        return cpu.per_call_ms(seconds, row, spec.warmup, spec.duration)

    row["cpu_ms_per_call"] = {
        "servers": ms(servers),
        "client": ms(client),
        "total": ms(servers + client),
        "by_process": {name: ms(seconds) for name, seconds in each.items()},
    }
    return row


def measure_bayou(
    mode: Mode, workdir: Path, progress: Progress, notes: list[str]
) -> dict[str, Any]:
    """What ``calls.run_call`` measures (its warm-up, its clients and levels), with each
    figure's CPU cost: one silo on a fresh redis-server."""
    bench = Bench(mode, workdir, progress)
    try:
        _, url = bench.main_silo()
        out: dict[str, Any] = {"warm_up": calls.warm(bench, url)}
        for kind, _family in calls.CLIENTS:
            for c in (1, mode.high):
                spec = bench.spec(kind, [url], concurrency=c)
                out[f"{kind} c{c}"] = timed_with_cpu(bench, spec, f"bayou: call {kind} c={c}")
        return out
    finally:
        bench.procs.close()
        notes.extend(f"bayou: {n}" for n in bench.notes)


# -- Restate --------------------------------------------------------------------------------

RESTATE_CONFIG = """\
node-name = "bench"
cluster-name = "bayou-bench"
base-dir = "{data}"
listen-mode = "tcp"
disable-telemetry = true
log-filter = "warn"
log-disable-ansi-codes = true
bind-address = "127.0.0.1:{fabric}"
advertised-address = "http://127.0.0.1:{fabric}/"

[admin]
bind-address = "127.0.0.1:{admin}"
disable-web-ui = true

[ingress]
bind-address = "127.0.0.1:{ingress}"
"""

# What the SDK's serving docs give hypercorn in production, with one worker: one Python
# process runs the handlers, as one silo does for bayou.
HYPERCORN_CONFIG = """\
bind = "127.0.0.1:{port}"
workers = 1
worker_class = "uvloop"
h2_max_concurrent_streams = 2147483647
keep_alive_max_requests = 2147483647
keep_alive_timeout = 2147483647
"""


def _post_json(url: str, body: Any, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def restate_version(server: Path) -> str | None:
    out = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().split()[-1] if out.stdout.strip() else None


def measure_restate(
    mode: Mode, workdir: Path, progress: Progress, notes: list[str], where: install.Installed
) -> dict[str, Any]:
    assert where.python is not None and where.server is not None
    bench = Bench(mode, workdir, progress)
    data = workdir / "restate-data"
    data.mkdir(parents=True)
    ports = {name: free_port() for name in ("fabric", "admin", "ingress", "sdk")}
    config = workdir / "restate.toml"
    config.write_text(RESTATE_CONFIG.format(data=data, **ports))
    hypercorn = workdir / "hypercorn.toml"
    hypercorn.write_text(HYPERCORN_CONFIG.format(port=ports["sdk"]))
    admin = f"http://127.0.0.1:{ports['admin']}"
    ingress = f"http://127.0.0.1:{ports['ingress']}"
    sdk = f"http://127.0.0.1:{ports['sdk']}"
    out: dict[str, Any] = {}
    try:
        progress.start("restate: start server and SDK")
        started = time.monotonic()
        server = bench.procs.start(
            "restate-server",
            [str(where.server), "--config-file", str(config), "--no-logo"],
            {"RUST_LOG": "warn"},
        )
        handlers = bench.procs.start(
            "restate-sdk",
            [
                str(where.python),
                "-m",
                "hypercorn",
                "--config",
                str(hypercorn),
                "bench.peers.restate_app:app",
            ],
        )
        wait_http(server, admin + "/health", timeout=60.0)
        wait_http(handlers, sdk + "/health", timeout=60.0)
        status, body = _post_json(admin + "/deployments", {"uri": sdk, "force": True})
        if status >= 300:
            raise RuntimeError(f"registering {sdk} with Restate: HTTP {status} {body[:300]!r}")
        _until_ingress_serves(server, ingress + "/counter/ready/add")
        out["start_s"] = round(time.monotonic() - started, 2)
        path = {"path": "/counter/{key}/add", "body": '{"n":1}'}
        warm = LoadSpec(
            kind="raw-http",
            urls=[ingress],
            mode="each",
            concurrency=mode.high,
            key_count=mode.actors,
            duration=180.0,
            extra=path,
        )
        out["warm_up"] = bench.load(warm, f"restate: warm {mode.actors} keys")
        progress.advance()
        for c in (1, mode.high):
            spec = bench.spec("raw-http", [ingress], concurrency=c, extra=path)
            out[f"c{c}"] = timed_with_cpu(bench, spec, f"restate: call c={c}")
    finally:
        bench.procs.close()
        notes.extend(f"restate: {n}" for n in bench.notes)
        shutil.rmtree(data, ignore_errors=True)
    return out


def _until_ingress_serves(server: Any, url: str, timeout: float = 60.0) -> None:
    """Registration is acknowledged before every partition knows the new service."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"restate-server exited:\n{server.tail()}")
        try:
            status, body = _post_json(url, {"n": 0}, timeout=5.0)
        except OSError as exc:
            status, body = 0, str(exc).encode()
        if status == 200:
            return
        last = f"HTTP {status} {body[:200]!r}"
        time.sleep(0.2)
    raise TimeoutError(f"Restate's ingress did not serve {url} in {timeout}s: {last}")


# -- Ray ------------------------------------------------------------------------------------


def loopback_namespace() -> tuple[list[str], str | None]:
    """The command prefix that runs a program in a new network namespace with only a
    loopback interface (up), or ``[]`` and why not."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return [], "no unshare or ip command"
    prefix = [unshare, "--net", "sh", "-c", f'{ip} link set lo up && exec "$0" "$@"']
    try:
        done = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], str(exc)
    if done.returncode != 0:
        return [], (done.stderr.strip() or f"exit {done.returncode}")[:200]
    return prefix, None


def measure_ray(
    mode: Mode,
    workdir: Path,
    progress: Progress,
    notes: list[str],
    where: install.Installed,
    actors: int,
) -> dict[str, Any]:
    assert where.python is not None
    workdir.mkdir(parents=True, exist_ok=True)
    budget = 60.0 + 4 * (mode.warmup + mode.duration) + 60.0
    ray_tmp = tempfile.mkdtemp(prefix="bbp-ray-", dir="/tmp")
    config: dict[str, Any] = {
        "actors": actors,
        "duration": mode.duration,
        "warmup": mode.warmup,
        "key_count": mode.actors,
        "timeout": 30.0,
        "budget": budget,
        "levels": [1, mode.high],
        # Short: Ray's unix sockets live under it (108 bytes at most for a socket path).
        "temp_dir": ray_tmp,
    }
    prefix, why = loopback_namespace()
    if why:
        notes.append(
            f"ray: no network namespace ({why}); Ray ran with its node address 127.0.0.1, "
            "but its gRPC servers listen on every interface"
        )
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "RAY_USAGE_STATS_ENABLED": "0",  # no usage report sent anywhere
            "RAY_AUTH_MODE": "disabled",  # a one-node loopback cluster; no token in ~/.ray
        }
    )
    env.pop("VIRTUAL_ENV", None)
    command = [*prefix, str(where.python), str(ROOT / "bench" / "peers" / "ray_driver.py")]
    progress.start("ray: start")
    log_path = workdir / "ray-driver.log"
    result_path = workdir / "ray-result.json"
    with open(result_path, "w") as result_file:
        proc = subprocess.Popen(
            [*command, json.dumps(config)],
            cwd=ROOT,
            env=env,
            stdout=result_file,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: Ray's processes end with it
        )
    relay = threading.Thread(target=_relay, args=(proc, log_path, progress), daemon=True)
    relay.start()
    try:
        proc.wait(timeout=budget + 60.0)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the Ray driver ran past {budget + 60:.0f}s") from None
    finally:
        _end_group(proc.pid)
        proc.wait()
        relay.join(timeout=5.0)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    out = result_path.read_text()
    progress.advance()
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise RuntimeError(f"the Ray driver failed (exit {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    for level in ("c1", f"c{mode.high}"):
        first = (result.get(level) or {}).get("first_error")
        if first:
            notes.append(f"ray {level}: {result[level]['errors']} errors, first: {first}")
    return result


def _relay(proc: subprocess.Popen[str], log_path: Path, progress: Progress) -> None:
    """The driver's stderr to its log; its own progress lines to the progress bar."""
    assert proc.stderr is not None
    with open(log_path, "w") as log:
        for line in proc.stderr:
            log.write(line)
            _, mark, text = line.partition("ray driver: ")
            if mark:
                progress.start("ray: " + text.strip())


def _end_group(pgid: int) -> None:
    """SIGTERM, then SIGKILL, to what is left of the process group the driver led."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


# -- the run --------------------------------------------------------------------------------


def median_ratios(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for peer, level, bayou_row, figure in PAIRS:
        name = pair_name(peer, level, bayou_row, figure)
        values = [r["ratios"][name] for r in runs if r["ratios"].get(name) is not None]
        if values:
            out[name] = {"median": round(statistics.median(values), 3), "runs": values}
    return out


def ratios_of(run: dict[str, Any]) -> dict[str, float | None]:
    found: dict[str, float | None] = {}
    bayou = run.get("bayou") or {}
    for peer, level, bayou_row, figure in PAIRS:
        theirs = (run.get(peer) or {}).get(level)
        mine = bayou.get(bayou_row)
        if isinstance(theirs, dict) and isinstance(mine, dict):
            found[pair_name(peer, level, bayou_row, figure)] = pair_ratio(mine, theirs, figure)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="comparison runs (medians)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per figure")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before counting")
    parser.add_argument("--only", default=",".join(PEERS), help="peers: restate,ray")
    parser.add_argument("--ray-actors", type=int, default=4, help="Ray actors in the pool")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--budget", type=float, default=1800.0, help="seconds; later measurements are skipped"
    )
    args = parser.parse_args(argv)
    wanted = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(wanted) - set(PEERS))
    if unknown:
        parser.error(f"unknown peers {unknown}; known: {', '.join(PEERS)}")

    mode = Mode(
        name="peers",
        budget=3600.0,
        runs=1,
        duration=args.duration,
        warmup=args.warmup,
        actors=10_000,
        high=256,
        redis=True,
        scenarios=("call",),
    )
    steps_per_run = 7 + (3 if "restate" in wanted else 0) + (1 if "ray" in wanted else 0)
    progress = Progress(len(wanted) + args.runs * steps_per_run)
    workdir = Path(tempfile.mkdtemp(prefix="bayou-bench-peers-"))
    notes: list[str] = []
    not_measured: dict[str, str] = {}
    installed: dict[str, install.Installed] = {}
    peer_versions: dict[str, Any] = {}
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    try:
        for peer in wanted:
            progress.start(f"install {peer} into {install.CACHE}")
            try:
                installed[peer] = install.ray() if peer == "ray" else install.restate()
            except install.InstallError as exc:
                not_measured[peer] = f"not installed: {exc}"
                progress.note(f"{peer}: {not_measured[peer][:400]}")
            progress.advance()
        if "restate" in installed:
            where = installed["restate"]
            assert where.python is not None and where.server is not None
            peer_versions["restate-server"] = restate_version(where.server)
            peer_versions |= install.package_versions(
                where.python, ("restate-sdk", "hypercorn", "uvloop")
            )
        if "ray" in installed and installed["ray"].python is not None:
            peer_versions |= install.package_versions(installed["ray"].python, ("ray",))

        systems: list[tuple[str, Callable[[Path], dict[str, Any]]]] = [
            ("bayou", lambda d: measure_bayou(mode, d, progress, notes))
        ]
        if "restate" in installed:
            systems.append(
                (
                    "restate",
                    lambda d: measure_restate(mode, d, progress, notes, installed["restate"]),
                )
            )
        if "ray" in installed:
            systems.append(
                (
                    "ray",
                    lambda d: measure_ray(
                        mode, d, progress, notes, installed["ray"], args.ray_actors
                    ),
                )
            )
        for i in range(args.runs):
            shift = i % len(systems)
            order = systems[shift:] + systems[:shift]
            run: dict[str, Any] = {"order": [name for name, _ in order]}
            for name, measure in order:
                if time.monotonic() - started > args.budget:
                    run[name] = {"failed": f"skipped: the {args.budget:.0f}s budget was spent"}
                    progress.note(f"run {i + 1} {name}: {run[name]['failed']}")
                    continue
                progress.start(f"run {i + 1}/{args.runs}: {name}")
                try:
                    run[name] = measure(workdir / f"run{i + 1}-{name}")
                except Exception as exc:  # one failing system must not lose the others
                    run[name] = {"failed": f"{type(exc).__name__}: {str(exc)[:1500]}"}
                    progress.note(f"run {i + 1} {name} failed: {str(exc)[:300]}")
            run["ratios"] = ratios_of(run)
            runs.append(run)
    finally:
        progress.finish()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}")

    for peer in installed:
        if not any(isinstance((r.get(peer) or {}).get("c1"), dict) for r in runs):
            failures = [str((r.get(peer) or {}).get("failed")) for r in runs]
            not_measured[peer] = "every run failed: " + "; ".join(failures)[:2000]
    medians = median_ratios(runs)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine(),
        "versions": versions() | peer_versions,
        "settings": {
            "runs": args.runs,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "keys": mode.actors,
            "high_concurrency": mode.high,
            "ray_actors": args.ray_actors,
        },
        "goals": [
            {
                "goal": goal,
                "ratio": name,
                "target": target,
                "median": (medians.get(name) or {}).get("median"),
                "met": None
                if name not in medians
                else bool(medians[name]["median"] >= target and medians[name]["median"] > 1.0),
            }
            for goal, name, target in GOALS
        ],
        "median_ratios": medians,
        "runs": runs,
        "not_measured": not_measured,
        "notes": notes,
    }
    md = render.write(report, args.out)
    print(md.read_text())
    return 0
