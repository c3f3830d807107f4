"""The container image's contract, checked on the Dockerfile (no Docker engine needed)."""

from __future__ import annotations

import importlib
import tomllib

from tests.k8s import image
from tests.k8s.manifests import (
    REDIS_STATEFULSET,
    ROOT,
    SILO_CONTAINER,
    SILO_DEPLOYMENT,
    base_resources,
    container,
    find,
    pod_spec,
)


def test_the_dockerfile_parses_and_builds_from_slim_python_3_11() -> None:
    stages = image.stages()
    assert stages, "no FROM in the Dockerfile"
    for stage in stages:
        assert stage.base.startswith("python:3.11-slim"), stage.base
    # The runtime stage is a fresh base, not the build stage with its build tools.
    assert stages[-1].name is None or stages[-1].name != stages[0].name
    assert len(stages) >= 2


def test_the_image_runs_as_a_numeric_non_root_user_matching_the_deployment() -> None:
    final = image.final_stage()
    assert final.user is not None, "no USER: the silo would run as root"
    user, _, group = final.user.partition(":")
    # Numeric, because Kubernetes can only verify runAsNonRoot against a numeric uid.
    assert user.isdigit() and int(user) != 0, final.user
    assert not group or (group.isdigit() and int(group) != 0), final.user
    assert any(f"--uid {user}" in run for run in final.runs), "the user is never created"
    security = pod_spec(find(base_resources(), "Deployment", SILO_DEPLOYMENT))["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == int(user)
    if group:
        assert security["runAsGroup"] == int(group)


def test_the_entrypoint_is_bayou_silo_in_exec_form() -> None:
    final = image.final_stage()
    assert final.entrypoint == ["bayou", "silo"]
    # Exec form: the silo is PID 1 and receives SIGTERM itself (a shell would not pass it).
    assert final.entrypoint_is_exec_form
    # Arguments (e.g. --app) go after `bayou silo`; none are baked in.
    assert not final.cmd


def test_the_app_comes_from_the_environment_and_defaults_to_the_samples() -> None:
    env = image.image_env()
    app = env["BAYOU_APP"]
    module, _, attr = app.partition(":")
    assert attr, app
    # The module is one of the files the image copies into its working directory.
    module_path = module.replace(".", "/")
    top = module_path.split("/")[0]
    assert top in image.context_sources(), f"{top} is not copied into the image"
    assert (ROOT / f"{module_path}.py").exists() or (ROOT / module_path / "__init__.py").exists()
    # ...into the runtime stage's working directory, which `bayou silo` imports from.
    final = image.final_stage()
    assert any(value[0] == top for flags, value in final.copies if not flags), final.copies
    assert final.workdir == "/app"
    # The attribute really is an App: what `bayou silo` in the image would load.
    from bayou.runtime.app import App

    loaded = getattr(importlib.import_module(module), attr)
    assert isinstance(loaded, App)


def test_the_image_listens_on_all_interfaces_on_the_exposed_port() -> None:
    env = image.image_env()
    final = image.final_stage()
    # On 127.0.0.1 (the silo's own default) nothing outside the container could reach it.
    assert env["BAYOU_HOST"] == "0.0.0.0"
    assert final.expose == [env["BAYOU_PORT"]]
    assert env.get("PYTHONUNBUFFERED") == "1"  # logs reach `kubectl logs` as they happen


def test_the_package_is_installed_not_run_from_the_source_tree() -> None:
    stages = image.stages()
    installs = [run for stage in stages for run in stage.runs if "pip install" in run]
    assert installs, "the package is never installed"
    assert not any("-e " in run or "--editable" in run for run in installs)
    final = image.final_stage()
    # The runtime stage takes the installed environment from the build stage.
    assert any(any(f.startswith("--from=") for f in flags) for flags, _ in final.copies)
    assert final.env["PATH"].startswith("/opt/bayou/bin:")


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = image.ignore_patterns()
    for source in image.context_sources():
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not image.ignored(source, patterns), f".dockerignore drops {source}"
    for kept in ("bayou/cli.py", "samples/app.py", "pyproject.toml", "README.md"):
        assert not image.ignored(kept, patterns), kept
    for dropped in (".git/config", ".venv/bin/python", "tests/conftest.py", "bench/x.py",
                    "bayou-data/silo.db", "bayou/__pycache__/cli.cpython-311.pyc",
                    "k8s/base/silo.yaml", "Dockerfile"):  # fmt: skip
        assert image.ignored(dropped, patterns), dropped


def test_the_image_and_the_deployment_name_the_same_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    silo = container(find(base_resources(), "Deployment", SILO_DEPLOYMENT), SILO_CONTAINER)
    assert silo["image"] == f"bayou:{version}"


def test_the_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["*", "!src", "**/__pycache__", "src/secret.txt"]
    assert image.ignored("README.md", patterns)
    assert not image.ignored("src/a/b.py", patterns)
    assert image.ignored("src/a/__pycache__/b.pyc", patterns)
    assert image.ignored("src/secret.txt", patterns)


def test_redis_image_is_pinned_to_a_minor_version() -> None:
    redis = container(find(base_resources(), "StatefulSet", REDIS_STATEFULSET), "redis")
    name, _, tag = redis["image"].partition(":")
    # A floating `latest` could move to a major version with another licence or config.
    assert name == "redis" and tag and tag != "latest", redis["image"]
