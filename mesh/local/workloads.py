"""The mesh's Deployments as the local mesh runs them, and where each one listens locally."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mesh.check.model import Mesh, Resource, as_dict, as_list
from mesh.check.semantic import ISTIO_ROOT_NAMESPACE
from mesh.local.fields import error


@dataclass(frozen=True)
class Workload:
    """One Deployment as the local mesh runs it: a process, its identity and its peers."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    account: str
    module: str  # what `python -m` runs; "" when the container runs another program
    command: tuple[str, ...]  # the container's command when it is not `python -m MODULE`
    port: int  # the container port the app listens on in a pod
    grpc: bool  # probed with gRPC, so it serves gRPC (the gateway serves HTTP)
    env: Mapping[str, str]  # the Deployment's literal env values
    peers: Mapping[str, str]  # `<PEER>_ADDR` setting -> the Service host it names

    @property
    def app(self) -> str:
        return self.labels.get("app", self.name)

    @property
    def version(self) -> str:
        return self.labels.get("version", "")

    def selected_by(self, resource: Resource, labels: Mapping[str, Any]) -> bool:
        """Whether `resource`, in this namespace or Istio's root one, selects these labels."""
        if resource.namespace not in (self.namespace, ISTIO_ROOT_NAMESPACE):
            return False
        return all(self.labels.get(str(k)) == str(v) for k, v in labels.items())


@dataclass(frozen=True)
class Ports:
    """Where one workload listens locally: its app, its sidecar's inbound and outbound ports."""

    app: int
    inbound: int  # 0: no inbound listener (the gateway is the mesh's entry, like an ingress)
    outbound: Mapping[str, int] = field(default_factory=dict)  # callee host -> port


def workloads(mesh: Mesh) -> dict[str, Workload]:
    """Every Deployment in the mesh, by name."""
    found = {}
    for deployment in mesh.of_kind("Deployment"):
        template = as_dict(deployment.spec.get("template"))
        pod = as_dict(template.get("spec"))
        containers = [as_dict(c) for c in as_list(pod.get("containers"))]
        if not containers:
            raise error(deployment, "spec.template.spec.containers", "no container")
        container = containers[0]
        command = [str(c) for c in as_list(container.get("command"))]
        python = bool(command) and command[0].startswith("python") and "-m" in command[:-1]
        if not command:
            raise error(deployment, "spec.template.spec.containers[0].command", "no command")
        env = {
            str(e["name"]): str(e["value"])
            for e in map(as_dict, as_list(container.get("env")))
            if "name" in e and "value" in e
        }
        probed = {
            as_dict(as_dict(container.get(p)).get("grpc")).get("port")
            for p in ("readinessProbe", "livenessProbe")
        }
        ports = [as_dict(p) for p in as_list(container.get("ports"))]
        grpc_ports = [int(p["containerPort"]) for p in ports if p.get("containerPort") in probed]
        port = grpc_ports[0] if grpc_ports else int(ports[0].get("containerPort", 0))
        peers = {
            name: value.rpartition(":")[0].split(".")[0]
            for name, value in env.items()
            if name.endswith("_ADDR")
        }
        found[deployment.name] = Workload(
            name=deployment.name,
            namespace=deployment.namespace,
            labels={
                str(k): str(v)
                for k, v in as_dict(as_dict(template.get("metadata")).get("labels")).items()
            },
            account=str(pod.get("serviceAccountName", "default")),
            module=command[command.index("-m") + 1] if python else "",
            command=() if python else tuple(command),
            port=port,
            grpc=bool(grpc_ports),
            env=env,
            peers=peers,
        )
    return found
