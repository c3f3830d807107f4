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


def _ms(figures: dict[str, Any], *names: str) -> str:
    return " / ".join(f"{figures[f'{name}_ms']:.2f}" for name in names)


def _streams(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    out = [
        f"## streams (a reader already waiting; goal: an item seen within "
        f"{section['goal_ms']:g} ms of being written)",
        "",
        "One writer calls `streamer.emit` once per item (Python client over the link, one "
        "call at a time, pausing as given between calls); the handler stamps the item with "
        "`time.time()` right before `ctx.write_stream`, before its commit. *written -> seen*: "
        "from that stamp to the reader's receipt (same machine, same clock). *reply -> seen*: "
        "from the writer receiving its reply (the item was durable by then) to the reader's "
        "receipt; negative when the reader was first. *written -> reply*: the stamp to the "
        "writer's reply (the commit and the way back), the rest of written -> seen.",
        "",
        "| store | reader | pause ms | items seen | items/s "
        "| written -> seen p50 / p90 / p99 / max ms | over goal "
        "| written -> reply p50 / p99 ms | reply -> seen min / p50 / p99 / max ms "
        "| call p50 / p99 ms |",
        "|---|---|---:|---:|---:|---|---:|---|---|---|",
    ]
    for row in section["rows"]:
        seen = f"{row['seen']:,} of {row['written']:,}"
        if not row["complete_in_order"]:
            seen += " **(not each once, in order)**"
        out.append(
            f"| {row['store']} | {row['reader']} | {row['gap_ms']:g} | {seen} "
            f"| {_num(row['items_per_s'])} "
            f"| {_ms(row['written_to_seen'], 'p50', 'p90', 'p99', 'max')} | {row['over_goal']} "
            f"| {_ms(row['written_to_reply'], 'p50', 'p99')} "
            f"| {_ms(row['reply_to_seen'], 'min', 'p50', 'p99', 'max')} "
            f"| {_ms(row['call'], 'p50', 'p99')} |"
        )
    out.append("")
    return out


def _reminders(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    due = section["due"]
    out = [
        f"## reminders ({section['registered']:,} registered, one per actor, over "
        f"{section['partitions']:,} partitions)",
        "",
        f"- registered in {section['register_s']} s: {section['api_registered']:,} through "
        f"`Storage.reminder_set` (64 in flight) at {_num(section['api_per_s'])}/s, "
        f"{section['pipelined_registered']:,} pipelined (the same fenced script) at "
        f"{_num(section['pipelined_per_s'])}/s",
        f"- Redis: {section['redis_used_mb']} MB used in all, "
        f"{_num(section['bytes_per_reminder'])} bytes and "
        f"{section['keys_per_reminder']} keys per reminder",
        f"- one poll (`reminders_due` over every partition, limit {section['poll_limit']:,}), "
        f"wall p50 / max of 20 and Redis's own time per poll; with nothing registered at "
        f"all: {_ms(section['poll_empty'], 'p50', 'max', 'redis')} ms; "
        f"with {section['registered']:,} registered (none due) / none registered: "
        f"{_num(section['poll_growth'])} x wall, {_num(section['poll_redis_growth'])} x Redis",
        "",
        f"| registered (besides the {due} due) | poll, none due: p50 / max / Redis ms "
        f"| poll, {due} due: p50 / max / Redis ms |",
        "|---:|---|---|",
    ]
    out += [
        f"| {row['registered']:,} | {_ms(row['none_due'], 'p50', 'max', 'redis')} "
        f"| {_ms(row['due'], 'p50', 'max', 'redis')} |"
        for row in section["polls"]
    ]
    fire = section.get("fire")
    if fire:
        out += [
            "",
            f"A silo started on that Redis (everything still registered) fired "
            f"{fire['overdue_fired']} of {fire['overdue']} overdue reminders, the last "
            f"{_num(fire['overdue_all_fired_after_ready_s'])} s after it was ready; of "
            f"{fire['set']} set through it due 2 s later, {fire['fired']} fired, "
            f"{_num(fire['lag_min_s'])} / {_num(fire['lag_p50_s'])} / "
            f"{_num(fire['lag_max_s'])} s (min / p50 / max) after due.",
        ]
    out.append("")
    return out


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
    out += _streams(results.get("streams"))
    out += _reminders(results.get("reminders"))
    mem = results.get("memory")
    if mem:
        out += [
            f"## memory (silo RSS at start {mem['base_rss_mb']} MB)",
            "",
            f"The state model alone: {_num(mem.get('state_bytes'))} B per instance.",
            "",
            "| idle activations | RSS MB | bytes per activation | beyond the state |",
            "|---:|---:|---:|---:|",
        ]
        out += [
            f"| {_num(r['activations'])} | {_num(r['rss_mb'])} "
            f"| {_num(r['bytes_per_activation'])} | {_num(r.get('beyond_state'))} |"
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
