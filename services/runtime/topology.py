"""The shop's topology, read from the Kubernetes YAML in mesh/base: its workloads, the port each
serves, the Services in front of them and the peers each one calls (its `<PEER>_ADDR` settings).

It is the only table of ports and peers: the services' default ports, the gateway's default
upstreams, the local mesh, `make up MESH=off`, the benchmarks and the tests all read it here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]  # the repository
BASE = ROOT / "mesh" / "base"
LOOPBACK = "127.0.0.1"

Doc = dict[str, Any]


class TopologyError(ValueError):
    """A Deployment the topology cannot read; `field` says where in it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Workload:
    """One Deployment: the process it runs, its identity, the port it serves and its peers."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    account: str
    module: str  # what `python -m` runs; "" when the container runs another program
    command: tuple[str, ...]  # the container's command when it is not `python -m MODULE`
    port: int  # the container port the app listens on in a pod
    grpc: bool  # probed with gRPC, so it serves gRPC
    http_health: str  # the HTTP readiness path of a workload that is not probed with gRPC
    env: Mapping[str, str]  # the Deployment's literal env values
    peers: Mapping[str, str]  # `<PEER>_ADDR` setting -> the Service host it names

    @property
    def app(self) -> str:
        return self.labels.get("app", self.name)

    @property
    def version(self) -> str:
        return self.labels.get("version", "")


def _dict(value: Any) -> Doc:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def workload(deployment: Doc) -> Workload:
    """The workload a Deployment describes; TopologyError names the field it cannot read."""
    metadata = _dict(deployment.get("metadata"))
    template = _dict(_dict(deployment.get("spec")).get("template"))
    pod = _dict(template.get("spec"))
    containers = [_dict(c) for c in _list(pod.get("containers"))]
    if not containers:
        raise TopologyError("spec.template.spec.containers", "no container")
    container = containers[0]
    command = [str(c) for c in _list(container.get("command"))]
    if not command:
        raise TopologyError("spec.template.spec.containers[0].command", "no command")
    python = command[0].startswith("python") and "-m" in command[:-1]
    env = {
        str(e["name"]): str(e["value"])
        for e in map(_dict, _list(container.get("env")))
        if "name" in e and "value" in e
    }
    probes = [_dict(container.get(p)) for p in ("readinessProbe", "livenessProbe")]
    probed = {_dict(p.get("grpc")).get("port") for p in probes}
    ports = [_dict(p) for p in _list(container.get("ports"))]
    grpc_ports = [int(p["containerPort"]) for p in ports if p.get("containerPort") in probed]
    port = grpc_ports[0] if grpc_ports else int(ports[0].get("containerPort", 0)) if ports else 0
    return Workload(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "default")),
        labels={
            str(k): str(v) for k, v in _dict(_dict(template.get("metadata")).get("labels")).items()
        },
        account=str(pod.get("serviceAccountName", "default")),
        module=command[command.index("-m") + 1] if python else "",
        command=() if python else tuple(command),
        port=port,
        grpc=bool(grpc_ports),
        http_health=str(_dict(probes[0].get("httpGet")).get("path", "")),
        env=env,
        # `orders:50054` and `orders.shop.svc.cluster.local:50054` both name the Service `orders`
        peers={
            name: value.rpartition(":")[0].split(".")[0]
            for name, value in env.items()
            if name.endswith("_ADDR")
        },
    )


def standalone(workloads: Iterable[Workload]) -> dict[str, Workload]:
    """One workload per app (its first version), by app name: what runs without a mesh, since
    only a sidecar can split a Service's traffic between versions. gRPC apps come first, in
    the order of their ports."""
    chosen: dict[str, Workload] = {}
    for w in sorted(workloads, key=lambda w: (w.version, w.name)):
        chosen.setdefault(w.app, w)
    return dict(sorted(chosen.items(), key=lambda item: (not item[1].grpc, item[1].port)))


@dataclass(frozen=True)
class Topology:
    """Every workload (by Deployment name) and every Service's port (by Service name)."""

    workloads: Mapping[str, Workload]
    services: Mapping[str, int]

    @classmethod
    def of(cls, documents: Iterable[Doc]) -> Topology:
        documents = list(documents)
        deployments = [d for d in documents if d.get("kind") == "Deployment"]
        services = {
            str(_dict(d.get("metadata")).get("name")): int(_dict(ports[0]).get("port", 0))
            for d in documents
            if d.get("kind") == "Service"
            for ports in [_list(_dict(d.get("spec")).get("ports"))]
            if ports
        }
        return cls({w.name: w for w in map(workload, deployments)}, services)

    def standalone(self) -> dict[str, Workload]:
        """What runs without a mesh, by app name (see `standalone`)."""
        return standalone(self.workloads.values())

    def port(self, service: str) -> int:
        """The port a Service (an app's name) is served on; KeyError names an unknown one."""
        if service not in self.services:
            raise KeyError(f"no Service {service!r} in {BASE}")
        return self.services[service]

    def upstreams(self, caller: str) -> dict[str, str]:
        """The peers of the standalone `caller`, by Service name, at their ports on loopback."""
        return {
            host: f"{LOOPBACK}:{self.port(host)}"
            for host in self.standalone()[caller].peers.values()
        }


@cache
def load(base: Path = BASE) -> Topology:
    """mesh/base as kustomize lists it (no overlays, so no kustomize needed at run time)."""
    listed = yaml.safe_load((base / "kustomization.yaml").read_text())
    documents: list[Doc] = []
    for resource in _list(_dict(listed).get("resources")):
        documents += [
            d for d in yaml.safe_load_all((base / str(resource)).read_text()) if isinstance(d, dict)
        ]
    return Topology.of(documents)
