"""Reading Istio and Kubernetes fields for the sidecars: lenient access, Services, durations,
and a `MeshError` naming the file, resource and field for anything the local mesh cannot honour.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mesh.check.model import Doc, Mesh, MeshError, Resource, as_dict, as_list, service_for_host
from mesh.check.semantic import parse_duration


def error(resource: Resource, where: str, message: str) -> MeshError:
    return MeshError([resource.finding(where, message)])


def allow_only(resource: Resource, node: Doc, where: str, allowed: Iterable[str]) -> None:
    """Refuse fields the local mesh would silently ignore: better an error than a wrong demo."""
    extra = sorted(set(node) - set(allowed))
    if extra:
        raise error(resource, f"{where}.{extra[0]}", "not supported by the local mesh")


def duration(resource: Resource, where: str, value: Any) -> str:
    """An Istio duration as Envoy writes one: seconds with a fraction, like 0.5s."""
    seconds = parse_duration(str(value)) if value is not None else None
    if seconds is None:
        raise error(resource, where, f"{value!r} is not a duration like 1.5s or 100ms")
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


def backend_service(mesh: Mesh, resource: Resource, where: str, host: str) -> Resource:
    """The Service a route sends calls to, or an error at `where`."""
    service = service_for_host(mesh, host, resource.namespace)
    if service is None:
        raise error(resource, where, "not a Service in the mesh")
    return service


def service_port(service: Resource) -> int:
    ports = [as_dict(p) for p in as_list(service.spec.get("ports"))]
    if len(ports) != 1:
        raise error(service, "spec.ports", "name a port: the Service has more than one")
    return int(ports[0]["port"])
