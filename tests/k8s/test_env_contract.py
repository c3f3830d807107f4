"""The environment contract between the manifests (and the image) and the silo's code.

The set of variables the silo reads is derived from the code, not written down here:

* the ``bayou silo`` command's options whose defaults come from the environment — found by
  building the real parser with an environment that answers every lookup with a value
  unique to the variable, then seeing which variable's value each option took;
* the variables its start-up code reads directly (``os.environ.get("POD_IP")`` and the
  like in ``bayou/cli.py`` outside the parser), found in the source;
* every ``SiloSettings`` field, as ``settings_from_env`` reads ``BAYOU_<FIELD>``.

A variable the manifests set that is not in that set is a typo or a leftover, and does
nothing in production; a variable the silo needs that they do not set is a silo that
listens on loopback, advertises an unreachable address, or never finds Redis.
"""

from __future__ import annotations

import ast
import inspect
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bayou import cli
from bayou.runtime.settings import SiloSettings, env_name, settings_from_env
from tests.k8s import image
from tests.k8s.manifests import (
    SILO_CONTAINER,
    SILO_DEPLOYMENT,
    Resource,
    base_resources,
    container,
    container_env,
    find,
    kustomize_binary,
    of_kind,
    overlay_dirs,
    pod_spec,
    port_number,
    pre_stop_seconds,
    references,
    render,
    service_link_env,
)

# Values the downward API and the Secret would supply in a real pod.
POD_IP = "10.244.1.17"
POD_NAME = "bayou-silo-5d8f7c9b6-x2x7q"
PASSWORD = "0123456789abcdef"

# The parser functions: their reads are attributed to options by probing (below).
PARSER_FUNCTIONS = ("build_parser", "_cluster_args")


class _ProbingEnviron(dict[str, str]):
    """An environment in which every variable is set, to a number unique to its name.

    Numbers, so that every option parses (``--port`` is an int). Lookups are recorded.
    """

    def __init__(self) -> None:
        super().__init__()
        self.read: dict[str, str] = {}

    def _value(self, key: str) -> str:
        return self.read.setdefault(key, str(47000 + len(self.read)))

    def get(self, key: str, default: Any = None) -> Any:
        return self._value(key)

    def __getitem__(self, key: str) -> str:
        return self._value(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self._value(key))


def silo_option_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``{variable: option}`` for every ``bayou silo`` option read from the environment."""
    probe = _ProbingEnviron()
    monkeypatch.setattr(os, "environ", probe)
    args = vars(cli.build_parser().parse_args(["silo"]))
    monkeypatch.undo()
    by_value = {value: name for name, value in probe.read.items()}
    found: dict[str, str] = {}
    for option, value in args.items():
        name = by_value.get(str(value))
        if name is not None:
            found[name] = option
    return found


def startup_reads() -> set[str]:
    """Variables ``bayou/cli.py`` reads by name outside the parser functions."""
    tree = ast.parse(inspect.getsource(cli))
    names: set[str] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if function.name in PARSER_FUNCTIONS:
            continue
        for node in ast.walk(function):
            name = _environ_key(node)
            if name is not None:
                names.add(name)
    return names


def _environ_key(node: ast.AST) -> str | None:
    """The literal key of ``os.environ.get("K")``, ``os.environ["K"]`` or ``os.getenv("K")``."""

    def is_environ(expr: ast.AST) -> bool:
        return isinstance(expr, ast.Attribute) and expr.attr == "environ"

    key: ast.AST | None = None
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        if isinstance(func, ast.Attribute) and (
            (func.attr == "get" and is_environ(func.value)) or func.attr == "getenv"
        ):
            key = node.args[0]
    elif isinstance(node, ast.Subscript) and is_environ(node.value):
        key = node.slice
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return key.value
    return None


def settings_env() -> set[str]:
    return {env_name(field) for field in SiloSettings.model_fields}


@dataclass
class Contract:
    options: dict[str, str]  # variable -> `bayou silo` option it sets
    startup: set[str]  # variables read directly at start-up
    settings: set[str]  # BAYOU_<SETTING>

    @property
    def reads(self) -> set[str]:
        return set(self.options) | self.startup | self.settings


@pytest.fixture
def contract(monkeypatch: pytest.MonkeyPatch) -> Contract:
    return Contract(silo_option_env(monkeypatch), startup_reads(), settings_env())


def deployment() -> Resource:
    return find(base_resources(), "Deployment", SILO_DEPLOYMENT)


def silo_container() -> Resource:
    return container(deployment(), SILO_CONTAINER)


def pod_environment() -> dict[str, str]:
    """What the silo's process sees in a pod: the image's ENV, overridden by the pod's."""
    spec = pod_spec(deployment())
    links = {} if spec.get("enableServiceLinks") is False else service_link_env(services())
    pod = container_env(
        silo_container(),
        fields={"status.podIP": POD_IP, "metadata.name": POD_NAME},
        secrets={("bayou-redis", "password"): PASSWORD},
        service_env=links,
    )
    return image.image_env() | pod


def services() -> list[Resource]:
    return of_kind(base_resources(), "Service")


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``bayou silo`` parsed in the pod's environment, exactly as the container runs it."""
    env = pod_environment()
    monkeypatch.setattr(os, "environ", env)
    yield vars(cli.build_parser().parse_args(["silo"]))


# -- the contract itself --------------------------------------------------------------------


def test_the_contract_is_found_in_the_code(contract: Contract) -> None:
    # If these fail, the derivation above lost track of the code, not the manifests.
    assert contract.options["BAYOU_PORT"] == "port"
    assert contract.options["BAYOU_REDIS_URL"] == "redis"
    assert {"POD_IP", "POD_NAME"} <= contract.startup
    assert "BAYOU_DRAIN_TIMEOUT" in contract.settings
    print(f"\nthe silo reads: {sorted(contract.reads)}")


def test_every_variable_the_manifests_set_is_one_the_silo_reads(contract: Contract) -> None:
    check_names(silo_container()["env"], contract)


def check_names(env_list: list[Resource], contract: Contract) -> None:
    names = [entry["name"] for entry in env_list]
    assert len(names) == len(set(names)), "a variable is set twice"
    referenced = {ref for entry in env_list for ref in references(str(entry.get("value", "")))}
    for name in names:
        if name in contract.reads:
            continue
        # Not read by the silo: allowed only as an ingredient of another value.
        assert not name.startswith("BAYOU_"), f"{name} is set but the silo never reads it"
        assert name in referenced, f"{name} is neither read by the silo nor used by a value"


def test_every_variable_the_image_sets_is_one_the_silo_reads(contract: Contract) -> None:
    for name in image.image_env():
        if name.startswith("BAYOU_"):
            assert name in contract.reads, f"the Dockerfile sets {name}, which nothing reads"


def test_references_name_variables_defined_earlier() -> None:
    # Kubernetes expands $(NAME) only for names defined above the entry; a later or
    # missing one stays in the value literally (here: a password of "$(REDIS_PASSWORD)").
    check_references(silo_container()["env"])


def check_references(env_list: list[Resource]) -> None:
    defined: set[str] = set()
    for entry in env_list:
        for ref in references(str(entry.get("value", ""))):
            assert ref in defined, f"{entry['name']} refers to {ref} before it is defined"
        defined.add(entry["name"])


@pytest.mark.parametrize("overlay", overlay_dirs(), ids=lambda p: p.name)
def test_every_overlay_keeps_the_contract(overlay: Path, contract: Contract) -> None:
    if kustomize_binary() is None:
        pytest.skip("needs kustomize or kubectl to render overlays")
    env_list = container(find(render(overlay), "Deployment", SILO_DEPLOYMENT), SILO_CONTAINER)[
        "env"
    ]
    check_names(env_list, contract)
    check_references(env_list)
    names = {entry["name"] for entry in env_list}
    for required in ("BAYOU_REDIS_URL", "BAYOU_CLUSTER", "BAYOU_HOST", "BAYOU_PORT", "POD_IP"):
        assert required in names, f"{overlay.name} drops {required}"


def test_the_pod_gives_the_silo_what_a_cluster_member_needs(parsed: dict[str, Any]) -> None:
    spec = silo_container()
    # Listens where probes and peers come: the pod IP, on the declared container port.
    assert parsed["host"] == "0.0.0.0"
    assert parsed["port"] == port_number(spec, "http")
    # Joins the cluster through the Redis Service, authenticated.
    assert parsed["redis"] == f"redis://:{PASSWORD}@redis:6379/0"
    assert parsed["cluster"] == "bayou"
    # The app the image ships.
    assert parsed["app"] == "samples.app:app"
    env = pod_environment()
    # Advertises the pod IP (BAYOU_ADVERTISE_HOST wins if set) and is named after the pod.
    assert (env.get("BAYOU_ADVERTISE_HOST") or env.get("POD_IP")) == POD_IP
    assert (env.get("BAYOU_SILO_NAME") or env.get("POD_NAME")) == POD_NAME
    assert logging.getLevelName(env["BAYOU_LOG_LEVEL"]) != f"Level {env['BAYOU_LOG_LEVEL']}"


def test_the_settings_in_the_manifests_validate() -> None:
    settings = settings_from_env(SiloSettings(), pod_environment())
    # Pinned, because a silo whose partition count differs from the cluster's will not start.
    assert pod_environment()["BAYOU_PARTITIONS"] == str(settings.partitions)


def test_the_drain_fits_in_the_grace_period() -> None:
    spec = pod_spec(deployment())
    grace = spec["terminationGracePeriodSeconds"]
    pre_stop = pre_stop_seconds(silo_container())
    drain = settings_from_env(SiloSettings(), pod_environment()).drain_timeout
    # The grace period runs from the delete: preStop, then SIGTERM and the drain, then
    # closing the HTTP server (up to 5 s for open links) and flushing. Past it: SIGKILL.
    assert "BAYOU_DRAIN_TIMEOUT" in {e["name"] for e in silo_container()["env"]}
    assert grace >= pre_stop + drain + 10, (grace, pre_stop, drain)
    # The preStop hook must leave the drain most of the budget.
    assert pre_stop <= 10


def test_the_redis_url_points_at_the_redis_service() -> None:
    url = pod_environment()["BAYOU_REDIS_URL"]
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    service = find(base_resources(), "Service", host)
    redis = container(find(base_resources(), "StatefulSet", "redis"), "redis")
    (entry,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert port_number(redis, entry["targetPort"]) == 6379


def test_service_links_cannot_shadow_the_silo_settings(contract: Contract) -> None:
    # Kubernetes injects <SERVICE>_PORT=tcp://IP:PORT for every Service; the client Service
    # is called `bayou`, so BAYOU_PORT would arrive as "tcp://10.x:8080" and the silo would
    # fail to parse its own port. The pod must either turn service links off or set every
    # colliding variable itself.
    spec = pod_spec(deployment())
    injected = set(service_link_env(services()))
    colliding = injected & contract.reads
    assert "BAYOU_PORT" in colliding  # what the check is about, while the Service is `bayou`
    if spec.get("enableServiceLinks") is not False:
        explicit = {e["name"] for e in silo_container()["env"]}
        assert colliding <= explicit, f"service links would set {sorted(colliding - explicit)}"


def test_pod_env_follows_kubernetes_precedence() -> None:
    # The container's own env wins over service links, and $(NAME) sees earlier entries.
    spec = {
        "name": "c",
        "env": [
            {"name": "A", "value": "x"},
            {"name": "B", "value": "$(A)-$(BAYOU_PORT)-$$(A)-$(MISSING)"},
            {"name": "BAYOU_PORT", "value": "8080"},
        ],
    }
    env = container_env(spec, fields={}, secrets={}, service_env={"BAYOU_PORT": "tcp://1:2"})
    assert env["B"] == "x-tcp://1:2-$(A)-$(MISSING)"
    assert env["BAYOU_PORT"] == "8080"
