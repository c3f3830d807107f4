"""``bench/results/peers.json`` and ``peers.md``: the medians of the ratios, every run's
raw figures, what was not measured and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROWS = (
    ("bayou", "bayou-link c1", "bayou, Python client (link), c=1"),
    ("bayou", "bayou-link c256", "bayou, Python client (link), c=256"),
    ("bayou", "bayou-http c1", "bayou, Python client (HTTP), c=1"),
    ("bayou", "bayou-http c256", "bayou, Python client (HTTP), c=256"),
    ("bayou", "raw-http c1", "bayou, plain HTTP, c=1"),
    ("bayou", "raw-http c256", "bayou, plain HTTP, c=256"),
    ("restate", "c1", "Restate, plain HTTP to the ingress, c=1"),
    ("restate", "c256", "Restate, plain HTTP to the ingress, c=256"),
    ("ray", "c1", "Ray, driver calls, c=1"),
    ("ray", "c256", "Ray, driver calls, c=256"),
)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _cpu(row: dict[str, Any]) -> str:
    found = row.get("cpu_ms_per_call")
    if not isinstance(found, dict):
        return "- | -"
    cores = float(row.get("throughput") or 0) * float(found["total"]) / 1000
    return f"{found['servers']:.3f} + {found['client']:.3f} = {found['total']:.3f} | {cores:.2f}"


def render(report: dict[str, Any]) -> str:
    m, v = report["machine"], report["versions"]
    settings = report["settings"]
    out = [
        f"# bayou and its peers: the call workload, {report['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}.  ",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".  ",
        f"{settings['runs']} comparison runs, {settings['duration_s']} s per figure after "
        f"{settings['warmup_s']} s of warm-up, {settings['keys']:,} keys, c=1 and "
        f"c={settings['high_concurrency']}; Ray: a pool of {settings['ray_actors']} actors. "
        f"Wall time {report['seconds']:.0f} s. Everything ran on this one machine, one system "
        "at a time: the figures compare within a run; ratios are taken per run, then the "
        "median.",
        "",
    ]
    if report.get("goals"):
        out += ["## Goals", "", "| goal | target | median ratio | met |", "|---|---:|---:|---|"]
        for goal in report["goals"]:
            met = {True: "yes", False: "**no**", None: "not measured"}[goal["met"]]
            out.append(f"| {goal['goal']} | {goal['target']:g}x | {_num(goal['median'])} | {met} |")
        out.append("")
    medians = report.get("median_ratios") or {}
    if medians:
        out += [
            "## Ratios (more than 1: bayou ahead)",
            "",
            "Calls/s: bayou / peer. p50 latency and CPU per call (every process of the "
            "system, client included): peer / bayou. In the runs' tables, *cores busy* is "
            "calls/s times CPU per call: how much of the 2 cores the system got while "
            "other work shared the machine.",
            "",
            "| ratio | median | runs |",
            "|---|---:|---|",
        ]
        for name, row in medians.items():
            each = ", ".join(_num(x) for x in row["runs"])
            out.append(f"| {name} | **{_num(row['median'])}** | {each} |")
        out.append("")
    runs = report.get("runs") or []
    for i, run in enumerate(runs, 1):
        out += [
            f"## Run {i} (order: {', '.join(run.get('order', []))})",
            "",
            "| system | calls/s | p50 ms | p90 ms | p99 ms | max ms | errors "
            "| CPU ms/call servers + client | cores busy |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for system, key, label in ROWS:
            row = (run.get(system) or {}).get(key)
            if not isinstance(row, dict):
                continue
            cells = [row.get(k) for k in ("throughput", "p50_ms", "p90_ms", "p99_ms", "max_ms")]
            style = f" ({row['style']})" if row.get("style") else ""
            out.append(
                f"| {label}{style} | "
                + " | ".join(_num(c) for c in cells)
                + f" | {_num(row.get('errors'))} | {_cpu(row)} |"
            )
        for system in ("bayou", "restate", "ray"):
            failed = (run.get(system) or {}).get("failed")
            if failed:
                out.append(f"\n{system} failed in this run: {failed[:500]}")
        out.append("")
    if report.get("not_measured"):
        out += ["## Not measured", ""]
        out += [f"- {peer}: {why}" for peer, why in report["not_measured"].items()]
        out.append("")
    if report.get("notes"):
        out += ["## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    return "\n".join(out)


def write(report: dict[str, Any], directory: Path) -> Path:
    """``peers.json`` and ``peers.md`` in ``directory``; the markdown's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "peers.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = directory / "peers.md"
    md.write_text(render(report) + "\n")
    return md
