"""Reading the Kubernetes manifests in ``k8s/`` the way Kubernetes reads them.

The tests in this package check the manifests against the schemas and against the silo's
code; the Kubernetes-like scale test (``tests/cluster/test_k8s_scale.py``) starts silos
with the environment these functions compute from them. Both must agree with what a
kubelet would hand the container, so the rules below are Kubernetes' own: downward-API
and Secret references, service-link variables, and ``$(NAME)`` expansion.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BASE = K8S / "base"
OVERLAYS = K8S / "overlays"
LOCAL = OVERLAYS / "local"
MANAGED_REDIS = OVERLAYS / "managed-redis"

Resource = dict[str, Any]

SILO_DEPLOYMENT = "bayou-silo"
SILO_CONTAINER = "silo"
REDIS_STATEFULSET = "redis"


def load_documents(path: Path) -> list[Resource]:
    """Every non-empty YAML document in ``path``, each of which must be a mapping."""
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in documents:
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: a document is not a mapping: {doc!r:.80}")
    return documents


def kustomization(directory: Path) -> Resource:
    (document,) = load_documents(directory / "kustomization.yaml")
    return document


def base_resources() -> list[Resource]:
    """The base's objects, read straight from the files its kustomization lists.

    The base applies no transformations, so this is what ``kubectl kustomize k8s/base``
    renders (a test compares the two where kubectl is installed).
    """
    resources: list[Resource] = []
    for entry in kustomization(BASE)["resources"]:
        resources.extend(load_documents(BASE / entry))
    return resources


def overlay_dirs() -> list[Path]:
    return sorted(p for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())


def kustomize_binary() -> list[str] | None:
    """How to run kustomize here: ``kustomize build`` or ``kubectl kustomize``, if any."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path) -> list[Resource]:
    """``kustomize build`` of ``directory`` (requires kustomize or kubectl)."""
    command = kustomize_binary()
    if command is None:
        raise RuntimeError("neither kustomize nor kubectl is installed")
    out = subprocess.run(
        [*command, str(directory)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


def find(resources: Iterable[Resource], kind: str, name: str) -> Resource:
    for resource in resources:
        if resource["kind"] == kind and resource["metadata"]["name"] == name:
            return resource
    raise LookupError(f"no {kind} {name!r} in the manifests")


def of_kind(resources: Iterable[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def pod_spec(workload: Resource) -> Resource:
    spec: Resource = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Resource, name: str) -> Resource:
    for candidate in pod_spec(workload)["containers"]:
        if candidate["name"] == name:
            found: Resource = candidate
            return found
    raise LookupError(f"no container {name!r} in {workload['metadata']['name']}")


def port_number(container_spec: Resource, port: int | str) -> int:
    """A probe's or Service's target port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    for entry in container_spec.get("ports", []):
        if entry.get("name") == port:
            number: int = entry["containerPort"]
            return number
    raise LookupError(f"container {container_spec['name']} has no port named {port!r}")


def pre_stop_seconds(container_spec: Resource) -> float:
    """How long the preStop hook takes: ``exec: [sleep, N]`` or the ``sleep`` action."""
    hook = container_spec.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] == "sleep":
        return float(command[1])
    raise ValueError(f"cannot tell how long the preStop hook {hook!r} runs")


# -- the container's environment, as the kubelet builds it ------------------------------------

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' ``$(NAME)`` expansion: a defined name is replaced, ``$$`` is a literal
    ``$``, and a reference to an undefined name is left exactly as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return defined.get(name, match.group(0))

    return _REFERENCE.sub(replace, value)


def references(value: str) -> set[str]:
    """The names a value refers to with ``$(NAME)``."""
    return {m.group(1) for m in _REFERENCE.finditer(value) if m.group(1)}


def service_link_env(services: Iterable[Resource]) -> dict[str, str]:
    """The variables the kubelet injects for every Service of the namespace unless the pod
    says ``enableServiceLinks: false`` (Docker-link style: ``<NAME>_SERVICE_HOST``,
    ``<NAME>_PORT=tcp://IP:PORT`` and per-port variants). IPs here are placeholders."""
    env: dict[str, str] = {}
    for index, service in enumerate(services):
        spec = service["spec"]
        if spec.get("clusterIP") == "None":
            continue  # headless Services get no variables
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        ip = f"10.96.0.{index + 10}"
        ports = spec.get("ports", [])
        if not ports:
            continue
        env[f"{prefix}_SERVICE_HOST"] = ip
        first = ports[0]
        env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            base = f"{prefix}_PORT_{port['port']}_{protocol}"
            env[base] = f"{protocol.lower()}://{ip}:{port['port']}"
            env[f"{base}_PROTO"] = protocol.lower()
            env[f"{base}_PORT"] = str(port["port"])
            env[f"{base}_ADDR"] = ip
            if "name" in port:
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port["port"]
                )
    return env


def container_env(
    container_spec: Resource,
    *,
    fields: Mapping[str, str],
    secrets: Mapping[tuple[str, str], str],
    resources: Mapping[str, str] | None = None,
    service_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment the kubelet gives ``container_spec``: service links first, then each
    ``env`` entry in order, expanding ``$(NAME)`` against what is defined so far.

    ``fields`` answers downward-API ``fieldRef`` paths (``status.podIP``), ``secrets``
    answers ``secretKeyRef`` as ``(name, key)``, ``resources`` answers ``resourceFieldRef``
    (already divided). A reference nothing answers raises, as the kubelet refuses to start
    the container.
    """
    env: dict[str, str] = dict(service_env or {})
    for entry in container_spec.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = expand(str(entry["value"]), env)
            continue
        source = entry.get("valueFrom", {})
        if "fieldRef" in source:
            env[name] = fields[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[name] = secrets[(ref["name"], ref["key"])]
        elif "resourceFieldRef" in source:
            env[name] = (resources or {})[source["resourceFieldRef"]["resource"]]
        else:
            raise ValueError(f"env {name}: unsupported source {source!r}")
    return env


def memory_mib(quantity: str) -> int:
    """A memory quantity (``512Mi``, ``2Gi``) in MiB, as ``divisor: 1Mi`` gives it."""
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity) // (1024 * 1024)
