"""The Kubernetes manifests: valid against the API schemas, complete, and consistent with
each other (ports, probes, selectors, budgets) — everything short of a real cluster."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.manifests import (
    BASE,
    K8S,
    LOCAL,
    MANAGED_REDIS,
    REDIS_STATEFULSET,
    SILO_CONTAINER,
    SILO_DEPLOYMENT,
    Resource,
    base_resources,
    container,
    find,
    kustomization,
    kustomize_binary,
    load_documents,
    of_kind,
    overlay_dirs,
    pod_spec,
    port_number,
    render,
)

WORKLOADS = ("Deployment", "StatefulSet")


def _validator() -> Any:
    # No type information ships with kubernetes-validate; imported dynamically so it is an
    # explicit Any rather than a type-ignore.
    return importlib.import_module("kubernetes_validate")


def schema_versions() -> list[str]:
    """The oldest Kubernetes the manifests promise to work on, and the newest the validator
    knows (it ships every version's schemas, so this runs offline)."""
    latest: str = _validator().utils.latest_version()
    return ["1.30.0", latest] if latest != "1.30.0" else [latest]


def kustomize_or_skip() -> None:
    if kustomize_binary() is None:
        pytest.skip("needs kustomize or kubectl to render overlays")


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def validate(resource: Resource, version: str) -> None:
    validator = _validator()
    try:
        # strict: the schemas with additionalProperties false, so a misspelt field (say
        # `readinesProbe`) is an error rather than silently ignored by the API server.
        validator.validate(resource, version, strict=True)
    except validator.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise AssertionError(
            f"{resource['kind']} {resource['metadata']['name']} is invalid for Kubernetes "
            f"{version} at {where or '<root>'}: {exc.message}"
        ) from None


# -- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", schema_versions())
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_is_valid_against_the_kubernetes_schema(path: Path, version: str) -> None:
    documents = load_documents(path)
    assert documents, f"{path} is empty"
    for resource in documents:
        validate(resource, version)


@pytest.mark.parametrize("version", schema_versions())
@pytest.mark.parametrize("overlay", overlay_dirs(), ids=lambda p: p.name)
def test_every_overlay_renders_to_valid_objects(overlay: Path, version: str) -> None:
    kustomize_or_skip()
    rendered = render(overlay)
    assert "Deployment" in {r["kind"] for r in rendered}
    for resource in rendered:
        validate(resource, version)


def test_the_validator_rejects_what_the_api_server_would() -> None:
    deployment = find(base_resources(), "Deployment", SILO_DEPLOYMENT)
    broken = {**deployment, "spec": {**deployment["spec"], "replicaz": 3}}
    with pytest.raises(AssertionError, match="replicaz"):
        validate(broken, schema_versions()[-1])


# -- kustomizations ------------------------------------------------------------------------


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_kustomization_resource_exists(directory: Path) -> None:
    doc = kustomization(directory)
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert doc["kind"] == "Kustomization"
    for entry in doc.get("resources", []):
        target = (directory / entry).resolve()
        assert target.exists(), f"{directory}: resource {entry} does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").exists(), f"{entry} is not a kustomization"
            # kustomize refuses a base that contains the overlay using it (a cycle).
            assert not directory.resolve().is_relative_to(target), f"{entry} contains {directory}"


def test_the_base_lists_every_manifest_in_its_directory() -> None:
    listed = set(kustomization(BASE)["resources"])
    present = {p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == present


def test_kustomize_renders_the_base_as_the_plain_files_are() -> None:
    kustomize_or_skip()

    def key(r: Resource) -> tuple[str, str]:
        return (r["kind"], r["metadata"]["name"])

    assert sorted(render(BASE), key=key) == sorted(base_resources(), key=key)
    assert sorted(render(K8S), key=key) == sorted(base_resources(), key=key)


def test_the_local_overlay_patches_only_what_the_base_has() -> None:
    resources = base_resources()
    for patch in kustomization(LOCAL).get("patches", []):
        target = patch["target"]
        find(resources, target["kind"], target["name"])


def test_the_managed_redis_overlay_runs_silos_only() -> None:
    kustomize_or_skip()
    rendered = render(MANAGED_REDIS)
    redis_objects = [r for r in rendered if "redis" in r["metadata"]["name"]]
    assert not redis_objects, [(r["kind"], r["metadata"]["name"]) for r in redis_objects]
    assert not of_kind(rendered, "StatefulSet")
    deployment = find(rendered, "Deployment", SILO_DEPLOYMENT)
    env = {e["name"]: e for e in container(deployment, SILO_CONTAINER)["env"]}
    assert "REDIS_PASSWORD" not in env
    url = env["BAYOU_REDIS_URL"]
    assert "value" not in url
    assert url["valueFrom"]["secretKeyRef"] == {"name": "bayou-redis", "key": "url"}
    # Everything that is left still selects and targets the silos.
    for service in of_kind(rendered, "Service"):
        assert selects(service["spec"]["selector"], deployment)


def test_the_local_overlay_supplies_the_secret_and_a_local_image() -> None:
    kustomize_or_skip()
    rendered = render(LOCAL)
    secrets = {s["metadata"]["name"] for s in of_kind(rendered, "Secret")}
    for workload in (r for r in rendered if r["kind"] in WORKLOADS):
        for entry in container_envs(workload):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] in secrets, f"{ref['name']} is not generated"
    silo = container(find(rendered, "Deployment", SILO_DEPLOYMENT), SILO_CONTAINER)
    assert silo["image"] == "bayou:dev"
    assert silo["imagePullPolicy"] == "Never"


def container_envs(workload: Resource) -> list[Resource]:
    return [entry for c in pod_spec(workload)["containers"] for entry in c.get("env", [])]


# -- consistency ---------------------------------------------------------------------------


def test_probes_and_ports_agree_with_the_container_ports() -> None:
    for workload in (r for r in base_resources() if r["kind"] in WORKLOADS):
        for spec in pod_spec(workload)["containers"]:
            declared = {p["containerPort"] for p in spec["ports"]}
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = spec.get(probe_name)
                assert probe is not None, f"{spec['name']} has no {probe_name}"
                action = probe.get("httpGet") or probe.get("tcpSocket")
                if action is not None:
                    assert port_number(spec, action["port"]) in declared


def test_the_silo_probes_check_joining_and_the_event_loop() -> None:
    silo = container(find(base_resources(), "Deployment", SILO_DEPLOYMENT), SILO_CONTAINER)
    # Readiness is "joined the ring with a valid lease": only then may a Service send calls.
    assert silo["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Liveness is "the event loop answers": a silo waiting for Redis must not be restarted.
    assert silo["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert silo["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_services_select_pods_and_target_their_ports() -> None:
    resources = base_resources()
    workloads = [r for r in resources if r["kind"] in WORKLOADS]
    for service in of_kind(resources, "Service"):
        selector = service["spec"]["selector"]
        selected = [w for w in workloads if selects(selector, w)]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {selected}"
        specs = pod_spec(selected[0])["containers"]
        for port in service["spec"]["ports"]:
            assert any(port_number_or_none(c, port["targetPort"]) for c in specs), port


def port_number_or_none(spec: Resource, port: int | str) -> int | None:
    try:
        return port_number(spec, port)
    except LookupError:
        return None


def selects(selector: dict[str, str], workload: Resource) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def test_workload_selectors_match_their_own_pods() -> None:
    for workload in (r for r in base_resources() if r["kind"] in WORKLOADS):
        assert selects(workload["spec"]["selector"]["matchLabels"], workload)


def test_silo_services_one_for_clients_and_a_headless_one_for_peers() -> None:
    resources = base_resources()
    client = find(resources, "Service", "bayou")
    peers = find(resources, "Service", "bayou-silos")
    assert client["spec"].get("clusterIP") != "None"
    assert peers["spec"]["clusterIP"] == "None"
    # Peers must reach silos that are joining or draining, which are not "ready".
    assert peers["spec"]["publishNotReadyAddresses"] is True


def test_rolling_updates_never_lose_capacity() -> None:
    deployment = find(base_resources(), "Deployment", SILO_DEPLOYMENT)
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1


def test_the_disruption_budget_and_the_autoscaler_cover_the_silos() -> None:
    resources = base_resources()
    deployment = find(resources, "Deployment", SILO_DEPLOYMENT)
    pdb = find(resources, "PodDisruptionBudget", SILO_DEPLOYMENT)
    assert selects(pdb["spec"]["selector"]["matchLabels"], deployment)
    hpa = find(resources, "HorizontalPodAutoscaler", SILO_DEPLOYMENT)
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", SILO_DEPLOYMENT)
    # Evictions one at a time never take the cluster below two silos.
    assert pdb["spec"]["maxUnavailable"] == 1
    assert hpa["spec"]["minReplicas"] - pdb["spec"]["maxUnavailable"] >= 2
    metrics = hpa["spec"]["metrics"]
    assert [m["resource"]["name"] for m in metrics if m["type"] == "Resource"] == ["cpu"]
    # CPU utilization is measured against the request: without one the HPA cannot work.
    silo = container(deployment, SILO_CONTAINER)
    assert "cpu" in silo["resources"]["requests"]
    # The autoscaler owns the replica count; a fixed one would fight it on every apply.
    assert "replicas" not in deployment["spec"]
    # Scale-downs move partitions: the autoscaler removes one silo at a time, slowly.
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 60
    assert all(p["value"] == 1 for p in down["policies"] if p["type"] == "Pods")


def test_every_container_has_requests_and_a_memory_limit() -> None:
    for workload in (r for r in base_resources() if r["kind"] in WORKLOADS):
        for spec in pod_spec(workload)["containers"]:
            resources = spec["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), spec["name"]
            assert "memory" in resources["limits"], spec["name"]


def test_pods_run_unprivileged() -> None:
    for workload in (r for r in base_resources() if r["kind"] in WORKLOADS):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


# -- Redis ---------------------------------------------------------------------------------


def redis_conf(resources: list[Resource]) -> dict[str, str]:
    statefulset = find(resources, "StatefulSet", REDIS_STATEFULSET)
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    config = volumes["config"]["configMap"]["name"]
    text = find(resources, "ConfigMap", config)["data"]["redis.conf"]
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings[key] = value.strip()
    return settings


def test_redis_keeps_an_append_only_file_on_a_persistent_volume() -> None:
    resources = base_resources()
    conf = redis_conf(resources)
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"  # the documented default (docs/kubernetes.md)
    assert conf["maxmemory-policy"] == "noeviction"  # evicting a journal would lose turns
    statefulset = find(resources, "StatefulSet", REDIS_STATEFULSET)
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container(statefulset, "redis")["volumeMounts"]}
    assert mounts[conf["dir"]] in claims, "the AOF directory is not on a persistent volume"
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["spec"]["serviceName"] in {
        s["metadata"]["name"] for s in of_kind(resources, "Service")
    }


def test_redis_and_the_silos_share_one_secret() -> None:
    resources = base_resources()
    redis_refs = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container_envs(find(resources, "StatefulSet", REDIS_STATEFULSET))
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    silo_refs = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container_envs(find(resources, "Deployment", SILO_DEPLOYMENT))
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert redis_refs == silo_refs == {("bayou-redis", "password")}
    # The base does not ship a password; the docs say how to create the Secret.
    assert not of_kind(resources, "Secret")
    docs = (K8S.parent / "docs" / "kubernetes.md").read_text()
    assert "kubectl create secret generic bayou-redis" in docs
