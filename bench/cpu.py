"""Silo CPU per operation: the figure that contention on a shared machine disturbs least.

``python -m bench.cpu [--runs 3] [--ops 40000] [--only add-link,get-link,...]`` starts a
redis-server and one silo (as the harness does), warms the call workload's actors, then
runs each workload for a fixed number of operations and reads the silo's CPU seconds
(``utime + stime`` of ``/proc/<pid>/stat``) before and after. The load generator's own
CPU (from ``wait4``) is reported too: it shares the machine, so a cheaper client matters;
and, for the silo, the mean group-commit batch (writes per storage call, from ``/metrics``).
Every process started here is ended by its pid. ``--profile NAME`` records the silo with
py-spy during that workload (``py-spy`` must be installed in the virtualenv); the
environment variables ``BENCH_PYSPY_RATE`` (samples per second, default 100) and
``BENCH_PYSPY_FLAGS`` (extra py-spy arguments) tune it. Prefer ``--nonblocking``: py-spy
otherwise stops the process to sample it, the stop lands as a system call returns, and
the lines that make system calls look far costlier than they are (a ``getpid`` inside
``asyncio.get_running_loop`` showed as 15% of the silo, and removing it changed nothing).

CPU seconds still move with what else the machine runs (caches, frequency). With
``--callgrind`` the servers run under valgrind's callgrind instead and the figure is
instructions per operation: slow (use a few hundred actors and a few thousand operations),
but the same from run to run whatever shares the machine, for comparing two versions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.loadgen import LoadSpec
from bench.procs import ROOT, Processes, wait_http

_TICK = os.sysconf("SC_CLK_TCK")

# name -> (load kind, op, which server)
WORKLOADS: dict[str, tuple[str, str, str]] = {
    "add-link": ("bayou-link", "add", "silo"),
    "add-http": ("bayou-http", "add", "silo"),
    "add-raw": ("raw-http", "add", "silo"),
    "get-link": ("bayou-link", "get", "silo"),
    "get-raw": ("raw-http", "get", "silo"),
    "tell-link": ("bayou-link", "tell", "silo"),
    "echo-durable": ("echo-link", "add", "durable"),
    "echo-link": ("echo-link", "add", "link"),
    "echo-http": ("raw-http", "add", "http"),
}


def cpu_seconds(pid: int, system: bool = False) -> float:
    """User plus system CPU seconds of ``pid`` so far (all its threads); only system
    seconds with ``system``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    if system:
        return int(fields[12]) / _TICK
    return (int(fields[11]) + int(fields[12])) / _TICK


def syscalls(pid: int) -> tuple[int, int]:
    """Read and write system calls ``pid`` has made so far (``/proc/<pid>/io``)."""
    counts = {}
    with open(f"/proc/{pid}/io") as io:
        for line in io:
            name, _, value = line.partition(":")
            counts[name] = int(value)
    return counts["syscr"], counts["syscw"]


def journal_batches(url: str) -> tuple[float, float]:
    """(group commits, writes they carried) so far, from the silo's ``/metrics``; zeros from
    a server that has none (the echoes)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5.0) as response:
            text = response.read().decode()
    except OSError:
        return 0.0, 0.0
    found = dict.fromkeys(("count", "sum"), 0.0)
    for line in text.splitlines():
        for part in found:
            if line.startswith(f"bayou_journal_batch_size_{part} "):
                found[part] = float(line.split()[1])
    return found["count"], found["sum"]


def instructions(pid: int, zero: bool = False) -> float:
    """Instructions the callgrind run ``pid`` has executed (since its last zeroing)."""
    command = ["callgrind_control", "-z" if zero else "-e", str(pid)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    if zero:
        return 0.0
    if os.environ.get("BENCH_CALLGRIND_OUT"):  # keep a profile of what was just counted
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, timeout=120)
    # "Totals: Ir" then one "Th <n> <count>" line per thread.
    threads = re.findall(r"^\s*Th\s+\d+\s+([\d,]+)", out.stdout, re.MULTILINE)
    if not threads:
        raise RuntimeError(f"no Ir in callgrind_control output: {out.stdout[-500:]}")
    return float(sum(int(n.replace(",", "")) for n in threads))


def run_load(spec: LoadSpec, profile: str = "") -> tuple[dict[str, Any], float]:
    """One load generator to completion: its result and its own CPU seconds (with
    ``profile``, run under py-spy writing there; its CPU figure then means nothing)."""
    command = [sys.executable, "-m", "bench.loadgen", json.dumps(asdict(spec))]
    if profile:
        command = [*_py_spy_record(profile), "--", *command]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{err[-2000:]}")
    # The result is the last JSON line (py-spy, when wrapping, writes lines of its own).
    last = [line for line in out.splitlines() if line.startswith("{")][-1]
    result: dict[str, Any] = json.loads(last)
    return result, usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ops", type=int, default=40_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--actors", type=int, default=10_000)
    parser.add_argument("--only", default="add-link,get-link,tell-link,echo-durable")
    parser.add_argument("--profile", default="")
    parser.add_argument("--profile-out", default="prof.svg")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--profile-client", default="", help="py-spy output for the client")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    for name in names:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")

    workdir = Path(tempfile.mkdtemp(prefix="bayou-cpu-"))
    procs = Processes(workdir / "procs")
    try:
        redis_child, redis_url = procs.redis()
        servers: dict[str, tuple[int, str]] = {}

        def server(which: str) -> tuple[int, str]:
            if which not in servers:
                if which == "silo":
                    if args.callgrind:
                        child, url = _silo_under_callgrind(procs, redis_url)
                    else:
                        child, url = procs.silo("silo", redis_url=redis_url)
                    warm = LoadSpec(
                        kind="bayou-link", urls=[url], mode="each",
                        concurrency=args.concurrency, key_count=args.actors, duration=120.0,
                    )  # fmt: skip
                    run_load(warm)
                else:
                    from bench.procs import free_port

                    port = free_port()
                    extra = ["--redis", redis_url] if which == "durable" else []
                    kind = "http" if which == "http" else "link"
                    url = f"http://127.0.0.1:{port}"
                    child = procs.python(
                        f"echo-{which}", "bench.echo", [kind, "--port", str(port), *extra],
                        url + "/readyz",
                    )  # fmt: skip
                servers[which] = (child.pid, url)
            return servers[which]

        rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for run in range(args.runs):
            for name in names:
                kind, op, which = WORKLOADS[name]
                pid, url = server(which)
                spec = LoadSpec(
                    kind=kind, urls=[url], op=op, concurrency=args.concurrency,
                    duration=120.0, max_ops=args.ops, key_count=args.actors,
                )  # fmt: skip
                run_load(replace(spec, max_ops=min(2000, args.ops)))  # warm the code paths
                spy = None
                if name == args.profile and run == args.runs - 1:
                    spy = _py_spy(pid, args.profile_out)
                # Read outside the measured span: serving /metrics costs the silo too.
                batches_before, batched_before = journal_batches(url)
                if args.callgrind:
                    instructions(pid, zero=True)
                before, redis_before = cpu_seconds(pid), cpu_seconds(redis_child.pid)
                reads_before, writes_before = syscalls(pid)
                system_before = cpu_seconds(pid, system=True)
                profile_client = args.profile_client if name == args.profile else ""
                result, client_cpu = run_load(spec, profile_client)
                used = cpu_seconds(pid) - before
                reads, writes = syscalls(pid)
                system = cpu_seconds(pid, system=True) - system_before
                redis_used = cpu_seconds(redis_child.pid) - redis_before
                if args.callgrind:
                    used = instructions(pid) / 1e6  # shown as "us": millions of instructions
                batches, batched = journal_batches(url)
                if spy is not None:
                    spy.send_signal(2)  # SIGINT to our own py-spy: write the profile
                    spy.wait(60)
                ops = max(result["ops"], 1)
                row = {
                    "silo_us": used / ops * 1e6,
                    "client_us": client_cpu / ops * 1e6,
                    "redis_us": redis_used / ops * 1e6,
                    "system_us": system / ops * 1e6,
                    "reads": (reads - reads_before) / ops,
                    "writes": (writes - writes_before) / ops,
                    "throughput": result["throughput"],
                    "p50_ms": result["p50_ms"],
                    "errors": result["errors"],
                    "batch": (batched - batched_before) / max(batches - batches_before, 1),
                }
                rows[name].append(row)
                print(f"run {run + 1} {name:13} " + _fmt(row), file=sys.stderr, flush=True)
        print("medians" + (" (silo: instructions per op)" if args.callgrind else "") + ":")
        for name in names:
            med = {k: statistics.median(r[k] for r in rows[name]) for k in rows[name][0]}
            print(f"  {name:13} " + _fmt(med))
    finally:
        procs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _silo_under_callgrind(procs: Processes, redis_url: str) -> tuple[Any, str]:
    from bench.procs import free_port

    port = free_port()
    command = [
        "valgrind", "--tool=callgrind",
        f"--callgrind-out-file={os.environ.get('BENCH_CALLGRIND_OUT', '/dev/null')}",
        sys.executable, "-m", "bayou", "silo", "--app", "bench.app:app", "--port", str(port),
        "--redis", redis_url, "--cluster", "bench",
    ]  # fmt: skip
    # No reminder poll: periodic work would be charged to however few operations ran.
    env = {"BAYOU_LOG_LEVEL": "WARNING", "BAYOU_REMINDER_INTERVAL": "3600"}
    child = procs.start("silo", command, env)
    url = f"http://127.0.0.1:{port}"
    wait_http(child, url + "/readyz", timeout=600.0)
    return child, url


def _fmt(row: dict[str, float]) -> str:
    return (
        f"silo {row['silo_us']:6.1f} us/op (sys {row['system_us']:4.1f})  "
        f"client {row['client_us']:6.1f}  "
        f"redis {row['redis_us']:5.1f}  "
        f"syscalls r {row['reads']:.2f} w {row['writes']:.2f}  "
        f"{row['throughput']:8.0f}/s  p50 {row['p50_ms']:.2f} ms  errors {row['errors']:.0f}"
        + (f"  batch {row['batch']:.1f}" if row["batch"] else "")
    )


def _py_spy_record(out: str) -> list[str]:
    binary = Path(sys.executable).parent / "py-spy"
    return [str(binary), "record", "-r", os.environ.get("BENCH_PYSPY_RATE", "100"), "-o", out] + (
        (["-f", "raw"] if out.endswith(".txt") else [])
        + os.environ.get("BENCH_PYSPY_FLAGS", "").split()
    )


def _py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*_py_spy_record(out), "--pid", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
