"""The mesh's Deployments as the local mesh runs them (read by services/runtime/topology.py), and
where each one listens locally."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mesh.check.model import Mesh, Resource
from mesh.check.semantic import ISTIO_ROOT_NAMESPACE
from mesh.local.fields import error
from services.runtime import topology
from services.runtime.topology import TopologyError, Workload


def selects(resource: Resource, workload: Workload, labels: Mapping[str, Any]) -> bool:
    """Whether `resource`, in the workload's namespace or Istio's root one, selects it by these
    labels."""
    if resource.namespace not in (workload.namespace, ISTIO_ROOT_NAMESPACE):
        return False
    return all(workload.labels.get(str(k)) == str(v) for k, v in labels.items())


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
        try:
            found[deployment.name] = topology.workload(deployment.doc)
        except TopologyError as problem:
            raise error(deployment, problem.field, problem.message) from None
    return found
