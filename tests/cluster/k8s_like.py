"""Just enough Kubernetes to run bayou's manifests on one machine, with real processes.

Everything a pod gets comes from ``k8s/`` and the Dockerfile, computed by the same code
the manifest tests use (``tests.k8s.manifests``, ``tests.k8s.image``):

* **Redis** runs the StatefulSet's command with the ConfigMap's ``redis.conf`` and the
  Secret's password, on a real ``redis-server``.
* **Silo pods** run the image's entrypoint (``bayou silo``, no arguments) with the image's
  ENV overridden by the Deployment's env, resolved like the kubelet does (downward API,
  Secret, ``$(NAME)`` expansion, service links unless disabled). The only differences from a
  cluster are substitutions a single machine forces, listed in ``Pod.substituted``: every
  pod shares 127.0.0.1, so each listens on its own free port (``BAYOU_HOST``/``BAYOU_PORT``),
  and the Service names in ``BAYOU_REDIS_URL`` resolve to local addresses (cluster DNS).
* **The kubelet** runs the startup, readiness and liveness probes with the manifest's
  timings; a pod is in its Services' endpoints only while its readiness probe passes.
  Deleting a pod takes it out of the endpoints, runs the preStop hook's sleep, sends
  SIGTERM, and SIGKILLs it if it is still alive when ``terminationGracePeriodSeconds``
  (counted from the delete) runs out.
* **Services** are TCP proxies choosing a ready endpoint per connection, as kube-proxy
  does; connections already open stay where they are.
* **The Deployment** scales by starting pods together and deleting pods together, picking
  not-ready and then most recently ready pods first, as the ReplicaSet controller does.

To make "ready only once joined" observable, a starting pod's path to Redis is slowed
(``join_delay`` per packet) until its first 200 from ``/readyz``: on loopback the silo goes
from answering HTTP to active in about a millisecond, too fast to watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from bayou.placement.redis_membership import RedisMembership
from tests.cluster.harness import ROOT, SiloProcess, free_port
from tests.k8s import image
from tests.k8s.manifests import (
    REDIS_STATEFULSET,
    SILO_CONTAINER,
    SILO_DEPLOYMENT,
    Resource,
    base_resources,
    container,
    container_env,
    find,
    memory_mib,
    of_kind,
    pod_spec,
    port_number,
    pre_stop_seconds,
    service_link_env,
)
from tests.redis_server import redis_binary

# -- networking ----------------------------------------------------------------------------


class TcpProxy:
    """A listening port on 127.0.0.1 that pipes each connection to a target port.

    ``pick`` chooses the target when a connection arrives (None: refuse it, as kube-proxy
    rejects connections to a Service without endpoints). ``delay`` holds every chunk of
    data that long in each direction, order kept.
    """

    def __init__(self, pick: Callable[[], int | None], *, delay: float = 0.0) -> None:
        self.pick = pick
        self.delay = delay
        self.port = 0
        self.accepted = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            target = self.pick()
            if target is None:
                self.refused += 1
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
            except OSError:
                self.refused += 1
                writer.transport.abort()
                return
            self.accepted += 1
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(1 << 16):
                if self.delay:
                    await asyncio.sleep(self.delay)
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


def resolve_url(url: str, dns: dict[tuple[str, int], int]) -> str:
    """``url`` with a Service's ``host:port`` replaced by the local port standing for it."""
    parts = urlsplit(url)
    port = parts.port or 6379
    local = dns.get((parts.hostname or "", port))
    if local is None:
        return url
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{local}" if credentials else f"127.0.0.1:{local}"
    return urlunsplit(parts._replace(netloc=netloc))


# -- Redis ---------------------------------------------------------------------------------


class RedisPod:
    """The manifests' Redis: the StatefulSet's command, the ConfigMap, the Secret."""

    def __init__(self, directory: Path, resources: list[Resource], password: str) -> None:
        self.directory = directory
        self.password = password
        self.port = free_port()
        statefulset = find(resources, "StatefulSet", REDIS_STATEFULSET)
        self.container = container(statefulset, "redis")
        labels = statefulset["spec"]["template"]["metadata"]["labels"]
        # Cluster DNS: every Service name and port that leads to this pod (not the
        # headless one, which resolves to the pod's own IP and is unused by the silos).
        self.service_names = {
            (service["metadata"]["name"], port["port"])
            for service in of_kind(resources, "Service")
            if service["spec"].get("clusterIP") != "None"
            and all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
            for port in service["spec"]["ports"]
        }
        volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
        # Each volume is a directory here, at the place of the container's mount path.
        self.mounts = {
            m["mountPath"]: directory / m["name"] for m in self.container["volumeMounts"]
        }
        config = find(resources, "ConfigMap", volumes["config"]["configMap"]["name"])
        self.config_text: str = config["data"]["redis.conf"]
        self.config_mount = next(
            m["mountPath"] for m in self.container["volumeMounts"] if m["name"] == "config"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The container's command and environment, with this machine's paths and port."""
        for local in self.mounts.values():
            local.mkdir(parents=True, exist_ok=True)
        (self.mounts[self.config_mount] / "redis.conf").write_text(self.local(self.config_text))
        limits = self.container["resources"]["limits"]
        env = container_env(
            self.container,
            fields={},
            secrets={("bayou-redis", "password"): self.password},
            resources={"limits.memory": str(memory_mib(limits["memory"]))},
        )
        command = [self.local(part) for part in self.container["command"]]
        # The pod has an address of its own; here the port and the interface differ.
        # Options after the config file override it, as on the container's command line.
        assert command[:2] == ["sh", "-c"] and command[2].startswith("exec redis-server ")
        command[2] += f" --port {self.port} --bind 127.0.0.1"
        path = f"{Path(redis_binary()).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return command, {"PATH": path, **env}

    def local(self, text: str) -> str:
        """``text`` with every mount path replaced by its directory on this machine."""
        for mount, local in self.mounts.items():
            text = re.sub(rf"(?<![\w/]){re.escape(mount)}(?![\w])", str(local), text)
        return text

    def start(self, timeout: float = 10.0) -> None:
        command, env = self.command()
        with open(self.directory / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis exited {self.proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError):
                if self.ask(f"AUTH {self.password}", "PING") == ["+OK", "+PONG"]:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"redis not answering: {self.log()}")

    def ask(self, *commands: str) -> list[str]:
        """Send inline commands on one connection; the first line of each reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
            sock.sendall("".join(f"{c}\r\n" for c in commands).encode())
            replies: list[str] = []
            buffer = b""
            while len(replies) < len(commands):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                replies.extend(line.decode() for line in lines)
            return replies

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        return ""


# -- the kubelet's probes ------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    path: str
    port: int  # the container port (8080 in the manifest), mapped to the pod's real port
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int

    @classmethod
    def of(cls, spec: Resource, container_spec: Resource) -> Probe:
        action = spec["httpGet"]
        return cls(
            path=action["path"],
            port=port_number(container_spec, action["port"]),
            period=float(spec.get("periodSeconds", 10)),
            timeout=float(spec.get("timeoutSeconds", 1)),
            failure_threshold=int(spec.get("failureThreshold", 3)),
            success_threshold=int(spec.get("successThreshold", 1)),
        )


@dataclass
class JoinSample:
    """One look at a starting pod: its /readyz answer, then its membership status."""

    at: float
    readyz: int | None  # None: nothing listening yet
    member: str | None  # None: not registered yet


@dataclass
class PodTemplate:
    """What the Deployment says about every pod."""

    container: Resource
    env: list[Resource]
    grace: float
    pre_stop: float
    service_links: bool
    startup: Probe
    readiness: Probe
    liveness: Probe
    container_port: int
    entrypoint: list[str]

    @classmethod
    def of(cls, resources: list[Resource]) -> PodTemplate:
        deployment = find(resources, "Deployment", SILO_DEPLOYMENT)
        spec = pod_spec(deployment)
        silo = container(deployment, SILO_CONTAINER)
        final = image.final_stage()
        assert final.entrypoint is not None
        return cls(
            container=silo,
            env=silo["env"],
            grace=float(spec["terminationGracePeriodSeconds"]),
            pre_stop=pre_stop_seconds(silo),
            service_links=spec.get("enableServiceLinks") is not False,
            startup=Probe.of(silo["startupProbe"], silo),
            readiness=Probe.of(silo["readinessProbe"], silo),
            liveness=Probe.of(silo["livenessProbe"], silo),
            container_port=port_number(silo, "http"),
            # `command` replaces the image's ENTRYPOINT, `args` its CMD.
            entrypoint=list(silo.get("command") or final.entrypoint) + list(silo.get("args") or []),
        )


class Pod(SiloProcess):
    """One silo pod: its process (started like the container), probes and shutdown."""

    def __init__(self, directory: Path, template: PodTemplate, name: str) -> None:
        super().__init__(directory / f"{name}.db")
        self.name = name
        self.template = template
        self.env: dict[str, str] = {}
        self.substituted: dict[str, tuple[str, str]] = {}  # name -> (manifest, here)
        self.redis_path: TcpProxy | None = None
        self.ready = False
        self.ready_since: float | None = None
        self.terminating = False
        self.join: list[JoinSample] = []
        self.readiness_log: list[tuple[float, int | None]] = []
        self.probe_failures: list[str] = []
        self.exit_code: int | None = None
        self.shutdown_seconds: float | None = None
        self.killed = False
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(
        self,
        *,
        secrets: dict[tuple[str, str], str],
        services: list[Resource],
        dns: dict[tuple[str, int], int],
        overrides: dict[str, str],
    ) -> None:
        """Compute the container's environment, then the machine's substitutions."""
        links = service_link_env(services) if self.template.service_links else {}
        manifest = image.image_env() | container_env(
            self.template.container,
            fields={"status.podIP": "127.0.0.1", "metadata.name": self.name},
            secrets=secrets,
            service_env=links,
        )
        env = dict(manifest)
        # One machine, one IP: listen on loopback only, each pod on its own port.
        assert int(env["BAYOU_PORT"]) == self.template.container_port
        env["BAYOU_HOST"] = "127.0.0.1"
        env["BAYOU_PORT"] = str(self.port)
        env["BAYOU_REDIS_URL"] = resolve_url(env["BAYOU_REDIS_URL"], dns)
        env.update(overrides)
        self.substituted = {
            k: (manifest.get(k, ""), v) for k, v in env.items() if manifest.get(k) != v
        }
        self.env = env

    def local_port(self, container_port: int) -> int:
        assert container_port == self.template.container_port
        return self.port

    async def start(self, timeout: float = 30.0) -> None:
        """Start the container; the kubelet's probes decide when it is ready."""
        program, *arguments = self.template.entrypoint
        assert program == "bayou", f"the image runs {program}, the harness runs bayou"
        command = [sys.executable, "-m", "bayou", *arguments]
        # Nothing from the test's own environment leaks in: PATH and the checkout only.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
        env.update(self.env)
        self._spawn(command, env)

    def _spawn(self, command: list[str], env: dict[str, str]) -> None:
        # Blocking, but only for the fork: a few milliseconds.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class KubeLike:
    """The silo Deployment and its client Service, with Redis, on this machine."""

    def __init__(
        self,
        directory: Path,
        *,
        overrides: dict[str, str] | None = None,
        join_delay: float = 0.02,
    ) -> None:
        self.directory = directory
        self.resources = base_resources()
        self.template = PodTemplate.of(self.resources)
        self.redis = RedisPod(directory / "redis-0", self.resources, secrets.token_hex(16))
        self.overrides = dict(overrides or {})
        self.join_delay = join_delay
        self.pods: list[Pod] = []
        self.deleted: list[Pod] = []
        self.cluster = self._env_value("BAYOU_CLUSTER")
        self._round_robin = itertools.count()
        self.service = TcpProxy(self._pick_endpoint)
        self._session: aiohttp.ClientSession | None = None
        self._membership: RedisMembership | None = None
        self._deployment_name = find(self.resources, "Deployment", SILO_DEPLOYMENT)["metadata"][
            "name"
        ]
        self._hash = secrets.token_hex(5)[:9]

    def _env_value(self, name: str) -> str:
        (entry,) = [e for e in self.template.env if e["name"] == name]
        value: str = entry["value"]
        return value

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        return self._session

    async def start(self) -> None:
        self.redis.directory.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        await self.service.start()
        self._membership = RedisMembership(self.redis.url, self.cluster)
        await self._membership.open()

    async def close(self) -> None:
        for pod in self.pods + self.deleted:
            for task in pod.tasks:
                task.cancel()
            await asyncio.gather(*pod.tasks, return_exceptions=True)
            if pod.running():
                await pod.kill()
            if pod.redis_path is not None:
                await pod.redis_path.close()
        await self.service.close()
        if self._membership is not None:
            await self._membership.close()
        if self._session is not None:
            await self._session.close()
        self.redis.stop()

    # -- Services --------------------------------------------------------------------------

    def endpoints(self) -> list[Pod]:
        return [p for p in self.pods if p.ready and not p.terminating]

    def _pick_endpoint(self) -> int | None:
        ready = self.endpoints()
        if not ready:
            return None
        return ready[next(self._round_robin) % len(ready)].port

    # -- pods ------------------------------------------------------------------------------

    async def create_pod(self) -> Pod:
        suffix = "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        name = f"{self._deployment_name}-{self._hash}-{suffix}"
        pod = Pod(self.directory, self.template, name)
        # The pod's own way to the Redis Service, slowed until the pod has joined.
        pod.redis_path = TcpProxy(lambda: self.redis.port, delay=self.join_delay)
        await pod.redis_path.start()
        pod.configure(
            secrets={("bayou-redis", "password"): self.redis.password},
            services=of_kind(self.resources, "Service"),
            dns={name: pod.redis_path.port for name in self.redis.service_names},
            overrides={**self.overrides, "BAYOU_WITNESS_REDIS": self.redis.url},
        )
        await pod.start()
        self.pods.append(pod)
        pod.tasks.append(asyncio.ensure_future(self._watch_join(pod)))
        pod.tasks.append(asyncio.ensure_future(self._kubelet(pod)))
        return pod

    async def _get(self, pod: Pod, probe: Probe) -> int | None:
        url = f"http://127.0.0.1:{pod.local_port(probe.port)}{probe.path}"
        try:
            timeout = aiohttp.ClientTimeout(total=probe.timeout)
            async with self.session.get(url, timeout=timeout) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _watch_join(self, pod: Pod, limit: float = 30.0) -> None:
        """Look at /readyz and then membership, every few ms, until the pod is ready."""
        assert self._membership is not None
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and pod.running():
            try:
                async with self.session.get(pod.address + "/readyz") as response:
                    status: int | None = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = None
            view = await self._membership.read()
            mine = [m for m in view.members if m.silo.startswith(pod.name + "-")]
            member = str(mine[0].status) if mine else None
            pod.join.append(JoinSample(time.monotonic(), status, member))
            if status == 200:
                break
            await asyncio.sleep(0.005)
        if pod.redis_path is not None:
            pod.redis_path.delay = 0.0  # joined: the network is fast from now on

    async def _kubelet(self, pod: Pod) -> None:
        """Startup probe until it passes; then readiness and liveness, each on its period."""
        template = self.template
        failures = 0
        while True:
            if await self._get(pod, template.startup) == 200:
                break
            failures += 1
            if failures >= template.startup.failure_threshold:
                pod.probe_failures.append("startup probe failed: the kubelet would restart")
                return
            await asyncio.sleep(template.startup.period)
        await asyncio.gather(self._readiness(pod), self._liveness(pod))

    async def _readiness(self, pod: Pod) -> None:
        probe = self.template.readiness
        successes = failures = 0
        while pod.running():
            status = await self._get(pod, probe)
            pod.readiness_log.append((time.monotonic(), status))
            if status == 200:
                successes, failures = successes + 1, 0
                if successes >= probe.success_threshold and not pod.ready:
                    pod.ready = True
                    pod.ready_since = time.monotonic()
            else:
                successes, failures = 0, failures + 1
                if failures >= probe.failure_threshold:
                    pod.ready = False
            await asyncio.sleep(probe.period)
        pod.ready = False

    async def _liveness(self, pod: Pod) -> None:
        probe = self.template.liveness
        failures = 0
        while pod.running() and not pod.terminating:
            status = await self._get(pod, probe)
            if pod.terminating:
                break  # a terminating container is not restarted for failing probes
            failures = 0 if status == 200 else failures + 1
            if failures >= probe.failure_threshold:
                pod.probe_failures.append("liveness probe failed: the kubelet would restart")
            await asyncio.sleep(probe.period)

    async def delete_pod(self, pod: Pod) -> None:
        """``kubectl delete pod``: out of the endpoints, preStop, SIGTERM, grace, SIGKILL."""
        deleted_at = time.monotonic()
        pod.terminating = True  # the endpoints controller drops it at once
        deadline = deleted_at + self.template.grace
        await asyncio.sleep(self.template.pre_stop)
        pod.signal(signal.SIGTERM)
        assert pod.proc is not None
        with contextlib.suppress(TimeoutError):
            await pod.wait_exit(timeout=max(deadline - time.monotonic(), 0.0))
        if pod.proc.poll() is None:
            pod.killed = True
            await pod.kill()
        pod.exit_code = pod.proc.returncode
        pod.shutdown_seconds = time.monotonic() - deleted_at
        self.pods.remove(pod)
        self.deleted.append(pod)

    # -- the Deployment ----------------------------------------------------------------------

    async def scale(self, replicas: int, timeout: float = 30.0) -> list[Pod]:
        """Set the replica count and wait for the rollout: the pods it started are ready, or
        the pods it deleted are gone. Returns those pods."""
        current = len(self.pods)
        if replicas > current:
            started = [await self.create_pod() for _ in range(replicas - current)]
            deadline = time.monotonic() + timeout
            while not all(p.ready for p in started):
                for pod in started:
                    if not pod.running():
                        raise RuntimeError(f"{pod.name} exited {pod.proc}:\n{pod.log()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"pods not ready after {timeout}s")
                await asyncio.sleep(0.05)
            return started
        # The ReplicaSet controller deletes not-ready pods first, then the most recently
        # ready ones.
        ranked = sorted(self.pods, key=lambda p: (p.ready, -(p.ready_since or 0.0)))
        victims = ranked[: current - replicas]
        await asyncio.gather(*(self.delete_pod(p) for p in victims))
        return victims

    async def views(self) -> list[dict[str, Any]]:
        views = []
        for pod in self.pods:
            async with self.session.get(pod.address + "/v1/cluster") as response:
                views.append(await response.json())
        return views

    async def wait_settled(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Until every pod routes by the same ring, made of exactly the running pods."""
        deadline = time.monotonic() + timeout
        views: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                views = await self.views()
                versions = {v["ring_version"] for v in views}
                active = [
                    sorted(
                        m["id"].rsplit("-", 1)[0] for m in v["members"] if m["status"] == "active"
                    )
                    for v in views
                ]
                expected = sorted(p.name for p in self.pods)
                if len(versions) == 1 and all(a == expected for a in active):
                    return views
            await asyncio.sleep(0.05)
        raise TimeoutError(f"ring did not settle on {len(self.pods)} pods: {views!r:.1500}")

    async def member_statuses(self) -> dict[str, str]:
        """Every silo that ever registered, by pod name: its last membership status."""
        assert self._membership is not None
        view = await self._membership.read()
        return {m.silo.rsplit("-", 1)[0]: str(m.status) for m in view.members}
