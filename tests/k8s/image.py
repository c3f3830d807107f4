"""What the container image promises, read from the Dockerfile with Docker's own parser.

There is no Docker engine where the tests run, so the image is never built here; instead
the Dockerfile is parsed by BuildKit's parser (the ``dockerfile`` package wraps it) and the
final stage's configuration — environment, user, entrypoint — is computed the way the
builder would, for the tests and for the Kubernetes-like harness that starts silos with
the image's environment.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.k8s.manifests import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _parser() -> Any:
    # A compiled extension without type information: imported dynamically so it stays an
    # explicit Any here rather than a type-ignore that a future stub would make stale.
    return importlib.import_module("dockerfile")


@dataclass
class Stage:
    base: str  # the FROM image with build arguments substituted
    name: str | None
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    workdir: str = "/"
    entrypoint: list[str] | None = None
    entrypoint_is_exec_form: bool = False
    cmd: list[str] | None = None
    expose: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    copies: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _substitute(value: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), value)


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    """Every stage of the Dockerfile, with ARG defaults and ENV values substituted."""
    args: dict[str, str] = {}
    result: list[Stage] = []
    for command in _parser().parse_file(str(path)):
        cmd, value = command.cmd.upper(), list(command.value)
        if cmd == "ARG" and not result:
            name, _, default = value[0].partition("=")
            args[name] = default
        elif cmd == "FROM":
            base = _substitute(value[0], args)
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else None
            result.append(Stage(base=base, name=name))
        elif not result:
            raise ValueError(f"{path}:{command.start_line}: {cmd} before the first FROM")
        else:
            stage = result[-1]
            if cmd == "ENV":
                for key, raw in zip(value[::2], value[1::2], strict=True):
                    stage.env[key] = _substitute(raw, {"PATH": "", **stage.env})
            elif cmd == "USER":
                stage.user = value[0]
            elif cmd == "WORKDIR":
                stage.workdir = value[0]
            elif cmd == "ENTRYPOINT":
                stage.entrypoint = value
                stage.entrypoint_is_exec_form = bool(command.json)
            elif cmd == "CMD":
                stage.cmd = value
            elif cmd == "EXPOSE":
                stage.expose.extend(value)
            elif cmd == "RUN":
                stage.runs.append(" ".join(value))
            elif cmd == "COPY":
                stage.copies.append((tuple(command.flags), tuple(value)))
    return result


def final_stage(path: Path = DOCKERFILE) -> Stage:
    return stages(path)[-1]


def image_env(path: Path = DOCKERFILE) -> dict[str, str]:
    """The image's environment (the final stage's ENV), PATH left out: a container's PATH
    is the image's business, and the harness runs the silo from this checkout instead."""
    env = dict(final_stage(path).env)
    env.pop("PATH", None)
    return env


def context_sources(path: Path = DOCKERFILE) -> list[str]:
    """Every path a COPY takes from the build context (not from another stage)."""
    sources: list[str] = []
    for stage in stages(path):
        for flags, value in stage.copies:
            if any(flag.startswith("--from=") for flag in flags):
                continue
            sources.extend(value[:-1])
    return sources


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` keeps ``relative`` out of the build context.

    Docker's rules, in the form this project uses them: patterns are matched in order and
    the last one that matches wins; ``!`` re-includes; a pattern that matches a directory
    matches everything under it; ``**`` matches any number of directories.
    """
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern[1:] if negated else pattern
        glob = glob.strip("/")
        if any(_match(candidate, glob) for candidate in candidates):
            verdict = not negated
    return verdict


def _match(path: str, glob: str) -> bool:
    if glob.startswith("**/"):
        rest = glob[3:]
        segments = path.split("/")
        return any(_match("/".join(segments[i:]), rest) for i in range(len(segments)))
    path_parts, glob_parts = path.split("/"), glob.split("/")
    if len(path_parts) != len(glob_parts):
        return False
    return all(fnmatch.fnmatchcase(p, g) for p, g in zip(path_parts, glob_parts, strict=True))
