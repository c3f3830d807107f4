"""The report: the machine, the versions, every figure, the goals — as JSON and markdown."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.procs import ROOT, find_binary


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = 0
    try:
        with open("/proc/meminfo") as info:
            memory = int(info.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 2**30, 1),
        "os": platform.platform(),
    }


def versions() -> dict[str, Any]:
    found: dict[str, Any] = {"python": sys.version.split()[0]}
    for name in ("aiohttp", "msgpack", "redis", "hiredis", "uvloop", "pydantic"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    server = find_binary("redis-server")
    if server:
        out = subprocess.run([server, "--version"], capture_output=True, text=True, check=False)
        found["redis-server"] = (
            out.stdout.split(" v=")[1].split()[0] if " v=" in out.stdout else None
        )
    found["bayou"] = _git()
    return found


def _git() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return f"{head}{'+changes' if dirty else ''}" if head else None


def write(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """``<stamp>-<mode>.json`` and ``.md`` in ``directory``, plus ``latest-<mode>.*``."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    mode = report["mode"]
    text = json.dumps(report, indent=2, sort_keys=False, default=str)
    markdown = render(report)
    json_path = directory / f"{stamp}-{mode}.json"
    md_path = directory / f"{stamp}-{mode}.md"
    for path, body in (
        (json_path, text),
        (md_path, markdown),
        (directory / f"latest-{mode}.json", text),
        (directory / f"latest-{mode}.md", markdown),
    ):
        path.write_text(body + "\n")
    return json_path, md_path


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rows(section: dict[str, Any]) -> list[str]:
    lines = [
        "| run | calls/s | p50 ms | p90 ms | p99 ms | max ms | errors | vs ceiling | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, row in section.items():
        if not isinstance(row, dict) or "throughput" not in row:
            continue
        cells = [row.get(k) for k in ("throughput", "p50_ms", "p90_ms", "p99_ms", "max_ms")]
        lines.append(
            f"| {name} | "
            + " | ".join(_num(c) for c in cells)
            + f" | {_num(row.get('errors'))} | {row.get('ceiling', '-')}"
            + f" | {_num(row.get('ratio'))} |"
        )
    return lines


def render(report: dict[str, Any]) -> str:
    m, v, results = report["machine"], report["versions"], report["results"]
    out = [
        f"# bayou benchmark: {report['mode']} mode, {report['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}.  ",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".  ",
        f"Runs per figure: {report['runs']} (medians); wall time {report['seconds']:.0f} s. "
        "Every process (silos, redis-server, echo servers, load generators) ran on this "
        "machine: figures are for comparison within the run, not absolute capacity.",
        "",
    ]
    if report.get("goals"):
        out += ["## Goals", "", "| goal | target | measured | met |", "|---|---|---|---|"]
        for goal in report["goals"]:
            met = {True: "yes", False: "**no**", None: "-"}[goal["met"]]
            out.append(f"| {goal['goal']} | {goal['target']} | {goal['measured']} | {met} |")
        out.append("")
    ceilings = results.get("ceilings") or {}
    if ceilings:
        out += ["## Ceilings", ""]
        flat = {
            f"{name} {level}": row
            for name, levels in ceilings.items()
            if name != "redis"
            for level, row in levels.items()
        }
        out += _rows(flat)
        redis = ceilings.get("redis") or {}
        if redis.get("set"):
            out += [
                "",
                f"redis-benchmark ({redis['clients']} clients, pipeline {redis['pipeline']}): "
                f"SET {_num(redis.get('set'))}/s, XADD {_num(redis.get('xadd'))}/s.",
            ]
        elif redis.get("missing"):
            out += ["", f"redis-benchmark: {redis['missing']}."]
        out.append("")
    for name in ("call", "query", "tell"):
        if results.get(name):
            out += [f"## {name}", "", *_rows(results[name]), ""]
    tell = (results.get("tell") or {}).get("applied")
    if tell:
        out += [
            f"Tells until applied: {tell['keys']} tells in {_num(tell.get('applied_s'))} s "
            f"= {_num(tell.get('applied_throughput'))}/s.",
            "",
        ]
    act = results.get("activate")
    if act:
        out += ["## activate (cold actors, first call)", "", *_rows(act)]
        out += [
            "",
            f"Cold p50 / warm p50 (one at a time): {_num(act.get('cold_over_warm_p50'))}.",
            "",
        ]
    rep = results.get("replay")
    if rep:
        out += [
            f"## replay (snapshot every {rep['snapshot_every']} records)",
            "",
            "| journal length | records replayed | first call p50 ms | max ms |",
            "|---:|---:|---:|---:|",
        ]
        out += [
            f"| {r['journal']} | {r['replayed']} | {_num(r['p50_ms'])} | {_num(r['max_ms'])} |"
            for r in rep["rows"]
        ]
        out.append("")
    mem = results.get("memory")
    if mem:
        out += [
            f"## memory (silo RSS at start {mem['base_rss_mb']} MB)",
            "",
            "| idle activations | RSS MB | bytes per activation |",
            "|---:|---:|---:|",
        ]
        out += [
            f"| {_num(r['activations'])} | {_num(r['rss_mb'])} "
            f"| {_num(r['bytes_per_activation'])} |"
            for r in mem["rows"]
        ]
        out.append("")
    for name in ("recover", "scale"):
        section = results.get(name)
        if section:
            out += [f"## {name}", ""]
            out += [
                f"- {k}: {_num(val)}"
                for k, val in section.items()
                if not isinstance(val, (list, dict))
            ]
            out.append("")
    if report.get("skipped"):
        out += ["## Skipped", "", *[f"- {s}" for s in report["skipped"]], ""]
    if report.get("notes"):
        out += ["## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    return "\n".join(out)
