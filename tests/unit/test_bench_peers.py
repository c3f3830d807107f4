"""``make bench-peers``' arithmetic and report, without the peers: ratios read the same way
(more than 1 is bayou ahead) for calls/s, latency and CPU; a peer that could not run is
reported with its reason; the peers' driver modules stay importable without bayou's
dependencies (they run under the peers' own interpreters)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from bench.peers import cpu, render, run

ROOT = Path(__file__).resolve().parents[2]


def row(throughput: float, p50: float, cpu_total: float) -> dict[str, Any]:
    return {
        "throughput": throughput,
        "p50_ms": p50,
        "p90_ms": p50,
        "p99_ms": p50,
        "max_ms": p50,
        "ops": int(throughput),
        "errors": 0,
        "cpu_ms_per_call": {"servers": cpu_total / 2, "client": cpu_total / 2, "total": cpu_total},
    }


def a_run(restate_c256: float) -> dict[str, Any]:
    bayou = {
        f"{kind} {level}": row(2000.0, 1.0, 0.5)
        for kind in ("bayou-link", "bayou-http", "raw-http")
        for level in ("c1", "c256")
    }
    return {
        "order": ["bayou", "restate"],
        "bayou": bayou,
        "restate": {"c1": row(200.0, 4.0, 4.0), "c256": row(restate_c256, 400.0, 2.0)},
        "ray": {"failed": "RuntimeError: no"},
    }


def test_ratios_read_more_than_one_as_bayou_ahead() -> None:
    ratios = run.ratios_of(a_run(500.0))
    assert ratios["restate c256 throughput vs raw-http c256"] == 4.0
    assert ratios["restate c1 p50 vs raw-http c1"] == 4.0
    assert ratios["restate c256 CPU per call vs raw-http c256"] == 4.0
    assert not any(name.startswith("ray") for name in ratios)  # ray failed: no ratio


def test_medians_over_runs_and_the_report_names_what_was_not_measured(tmp_path: Path) -> None:
    runs = [a_run(t) for t in (500.0, 1000.0, 250.0)]
    for each in runs:
        each["ratios"] = run.ratios_of(each)
    medians = run.median_ratios(runs)
    assert medians["restate c256 throughput vs raw-http c256"] == {
        "median": 4.0,
        "runs": [4.0, 2.0, 8.0],
    }
    report = {
        "date": "2026-01-01T00:00:00+00:00",
        "seconds": 1.0,
        "machine": {"cpu": "x", "cores": 2, "memory_gb": 1.0, "os": "linux"},
        "versions": {"python": "3.11"},
        "settings": {
            "runs": 3,
            "duration_s": 5.0,
            "warmup_s": 1.0,
            "keys": 10_000,
            "high_concurrency": 256,
            "ray_actors": 4,
        },
        "goals": [],
        "median_ratios": medians,
        "runs": runs,
        "not_measured": {"ray": "every run failed: RuntimeError: no"},
        "notes": [],
    }
    text = render.write(report, tmp_path).read_text()
    assert "| restate c256 throughput vs raw-http c256 | **4.00** | 4.00, 2.00, 8.00 |" in text
    assert "- ray: every run failed: RuntimeError: no" in text
    assert (tmp_path / "peers.json").exists()


def test_cpu_per_call_counts_the_warm_up_calls_too() -> None:
    # 1,000 calls measured over 5 s after a 1 s warm-up: about 1,200 made.
    assert cpu.per_call_ms(1.2, {"ops": 1000}, 1.0, 5.0) == 1.0
    assert cpu.tree(2**22 + 12345) == 0.0  # no such process


def test_peer_side_modules_import_nothing_of_bayous_dependencies() -> None:
    # Every import of the modules the peers' interpreters run; of the bench modules the Ray
    # driver reuses, the module-level ones (the load generator imports aiohttp where used).
    peer_side = ["peers/ray_driver.py", "peers/restate_app.py", "peers/cpu.py"]
    checked = [(name, True) for name in [*peer_side, "peers/__init__.py"]]
    checked += [("loadgen.py", False), ("stats.py", False), ("__init__.py", False)]
    for name, everywhere in checked:
        tree = ast.parse((ROOT / "bench" / name).read_text())
        nodes = list(ast.walk(tree)) if everywhere else tree.body
        imported = {
            alias.name.split(".")[0]
            for node in nodes
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in nodes
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        }
        third_party = {m for m in imported if m not in {"ray", "restate", "bench"}}
        third_party = {m for m in third_party if not _stdlib(m)}
        assert not third_party, f"bench/{name} imports {third_party}"


def _stdlib(module: str) -> bool:
    import sys

    return module in sys.stdlib_module_names or module == "__future__"
