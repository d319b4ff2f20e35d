"""The checks that no schema can make: cross-references between resources and the contracts."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mesh.check.contracts import Contracts
from mesh.check.model import (
    DEFAULT_NAMESPACE,
    Doc,
    Finding,
    Mesh,
    Resource,
    as_dict,
    as_list,
    service_for_host,
)

ISTIO_ROOT_NAMESPACE = "istio-system"
TRUST_DOMAIN = "cluster.local"
# The workload whose identity REST traffic carries: it may call only what REST exposes.
REST_GATEWAY_ACCOUNT = "gateway"
# Identities that Istio's installation creates, not this repository.
PLATFORM_PRINCIPALS = frozenset(
    {f"{TRUST_DOMAIN}/ns/{ISTIO_ROOT_NAMESPACE}/sa/istio-ingressgateway-service-account"}
)
# Istio CRD fields with the CEL rule `duration(self) >= duration('1ms')` (tests/mesh checks this
# list against the CRDs, so that it stays complete without them).
DURATION_FIELDS = frozenset(
    {
        "backoff",
        "baseEjectionTime",
        "connectTimeout",
        "duration",
        "exponentialDelay",
        "fixedDelay",
        "idleTimeout",
        "interval",
        "maxAge",
        "maxConnectionDuration",
        "perTryTimeout",
        "time",
        "timeout",
        "warmupDurationSecs",
    }
)
_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PRINCIPAL = re.compile(rf"{re.escape(TRUST_DOMAIN)}/ns/([^/]+)/sa/([^/]+)")

Rule = Callable[[Mesh, Contracts], Iterable[Finding]]


def parse_duration(text: str) -> float | None:
    """Seconds in a Go/Istio duration such as `1.5s`, `100ms` or `1m30s`; None if malformed."""
    total, position = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if text and position == len(text) else None


def principal(account: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The SPIFFE-style principal Istio gives a workload running as `account`."""
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/{account}"


def check_semantics(mesh: Mesh, contracts: Contracts) -> list[Finding]:
    return [finding for rule in RULES for finding in rule(mesh, contracts)]


# --- helpers -------------------------------------------------------------------------------


def _service_ports(service: Resource) -> list[Doc]:
    return [as_dict(p) for p in as_list(service.spec.get("ports"))]


def _template_labels(deployment: Resource) -> Doc:
    return as_dict(as_dict(as_dict(deployment.spec.get("template")).get("metadata")).get("labels"))


DATABASE_URL = "DATABASE_URL"


def _string_data(secret: Resource) -> Doc:
    return as_dict(secret.doc.get("stringData"))


def _runs_postgres(container: Doc) -> bool:
    """The container's image is PostgreSQL's (`postgres`, `<registry>/postgres`, any tag)."""
    image = str(container.get("image", "")).rpartition("/")[2]
    return image.partition("@")[0].partition(":")[0] == "postgres"


def _tcp_name(name: str) -> bool:
    return name == "tcp" or name.startswith("tcp-")


# A pod annotation naming the shared gRPC services a workload serves besides `shop.<app>.*`.
SERVES_ANNOTATION = "shop.example.com/serves"


def _serves(deployment: Resource) -> set[str]:
    """Full names of the shared gRPC services a Deployment declares it serves."""
    metadata = as_dict(as_dict(deployment.spec.get("template")).get("metadata"))
    declared = str(as_dict(metadata.get("annotations")).get(SERVES_ANNOTATION, ""))
    return {name.strip() for name in declared.split(",") if name.strip()}


def _workloads(mesh: Mesh) -> list[Resource]:
    """Everything that runs pods from a template: the services' Deployments and the database's
    StatefulSet."""
    return [*mesh.of_kind("Deployment"), *mesh.of_kind("StatefulSet")]


def _selected(mesh: Mesh, selector: Doc, namespace: str) -> list[Resource]:
    return [
        d
        for d in _workloads(mesh)
        if d.namespace == namespace
        and all(_template_labels(d).get(k) == v for k, v in selector.items())
    ]


def _containers(deployment: Resource) -> list[Doc]:
    pod = as_dict(as_dict(deployment.spec.get("template")).get("spec"))
    return [as_dict(c) for c in as_list(pod.get("containers"))]


def _grpc_ports(container: Doc) -> set[int | str]:
    """Container ports that kubelet probes with gRPC: the app's gRPC ports."""
    ports: set[int | str] = set()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        grpc = as_dict(as_dict(container.get(probe)).get("grpc"))
        if "port" in grpc:
            ports.add(grpc["port"])
    return ports


def _is_grpc_port(deployment: Resource, target: int | str) -> bool:
    for container in _containers(deployment):
        probed = _grpc_ports(container)
        for port in as_list(container.get("ports")):
            port = as_dict(port)
            if target in (port.get("name"), port.get("containerPort")) and (
                port.get("name") in probed or port.get("containerPort") in probed
            ):
                return True
    return False


def _mesh_bound(vs: Resource) -> bool:
    gateways = as_list(vs.spec.get("gateways"))
    return not gateways or "mesh" in gateways


def _destinations(vs: Resource) -> Iterator[tuple[str, Doc]]:
    for kind in ("http", "tcp", "tls"):
        for i, route in enumerate(as_list(vs.spec.get(kind))):
            for j, dest in enumerate(as_list(as_dict(route).get("route"))):
                yield (
                    f"spec.{kind}[{i}].route[{j}].destination",
                    as_dict(as_dict(dest).get("destination")),
                )
            mirror = as_dict(as_dict(route).get("mirror"))
            if mirror:
                yield f"spec.{kind}[{i}].mirror", mirror


def _policy_rules(policy: Resource) -> Iterator[tuple[int, Doc]]:
    for i, rule in enumerate(as_list(policy.spec.get("rules"))):
        yield i, as_dict(rule)


def _sources(rule: Doc) -> Iterator[tuple[str, str]]:
    for j, source in enumerate(as_list(rule.get("from"))):
        source = as_dict(as_dict(source).get("source"))
        for key in ("principals", "notPrincipals"):
            for k, value in enumerate(as_list(source.get(key))):
                yield f"from[{j}].source.{key}[{k}]", str(value)


def _operation_paths(rule: Doc) -> Iterator[tuple[str, str]]:
    for j, to in enumerate(as_list(rule.get("to"))):
        operation = as_dict(as_dict(to).get("operation"))
        for key in ("paths", "notPaths"):
            for k, value in enumerate(as_list(operation.get(key))):
                yield f"to[{j}].operation.{key}[{k}]", str(value)


# --- rules ---------------------------------------------------------------------------------


def weights(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """VirtualService weights are percentages; GRPCRoute weights are proportions."""
    for vs in mesh.of_kind("VirtualService"):
        for kind in ("http", "tcp", "tls"):
            for i, route in enumerate(as_list(vs.spec.get(kind))):
                destinations = [as_dict(d) for d in as_list(as_dict(route).get("route"))]
                given = [d["weight"] for d in destinations if "weight" in d]
                if len(destinations) > 1 or given:
                    total = sum(w for w in given if isinstance(w, int))
                    if total != 100:
                        yield vs.finding(
                            f"spec.{kind}[{i}].route", f"weights sum to {total}, not 100"
                        )
    for route in mesh.of_kind("GRPCRoute"):
        for i, rule in enumerate(as_list(route.spec.get("rules"))):
            refs = [as_dict(r) for r in as_list(as_dict(rule).get("backendRefs"))]
            if refs and sum(int(r.get("weight", 1)) for r in refs) == 0:
                yield route.finding(f"spec.rules[{i}].backendRefs", "every weight is 0")


def hosts(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """Every host, backend and peer address names a Service (and a port it has)."""

    def missing(resource: Resource, path: str, host: str, port: Any = None) -> Iterator[Finding]:
        service = service_for_host(mesh, host, resource.namespace)
        if service is None:
            yield resource.finding(path, f"host {host!r} is not a Service in the mesh")
        elif port is not None and port not in [p.get("port") for p in _service_ports(service)]:
            yield resource.finding(path, f"Service {service.name} has no port {port}")

    for vs in mesh.of_kind("VirtualService"):
        if _mesh_bound(vs):
            for j, host in enumerate(as_list(vs.spec.get("hosts"))):
                yield from missing(vs, f"spec.hosts[{j}]", str(host))
        for j, gateway in enumerate(as_list(vs.spec.get("gateways"))):
            ns, _, name = str(gateway).rpartition("/")
            if gateway != "mesh" and mesh.get("Gateway", name, ns or vs.namespace) is None:
                yield vs.finding(f"spec.gateways[{j}]", f"Gateway {gateway!r} is not in the mesh")
        for path, dest in _destinations(vs):
            port = as_dict(dest.get("port")).get("number")
            yield from missing(vs, f"{path}.host", str(dest.get("host", "")), port)
    for dr in mesh.of_kind("DestinationRule"):
        yield from missing(dr, "spec.host", str(dr.spec.get("host", "")))
    for route in mesh.of_kind("GRPCRoute"):
        for i, parent in enumerate(as_list(route.spec.get("parentRefs"))):
            parent = as_dict(parent)
            if parent.get("kind") == "Service":
                yield from missing(
                    route, f"spec.parentRefs[{i}]", parent["name"], parent.get("port")
                )
        for i, rule in enumerate(as_list(route.spec.get("rules"))):
            for j, ref in enumerate(as_list(as_dict(rule).get("backendRefs"))):
                ref = as_dict(ref)
                if ref.get("kind", "Service") == "Service":
                    path = f"spec.rules[{i}].backendRefs[{j}]"
                    yield from missing(route, path, str(ref.get("name")), ref.get("port"))
    for deployment in mesh.of_kind("Deployment"):
        for c, container in enumerate(_containers(deployment)):
            for e, env in enumerate(as_list(container.get("env"))):
                env = as_dict(env)
                if str(env.get("name", "")).endswith("_ADDR") and "value" in env:
                    host, _, port = str(env["value"]).rpartition(":")
                    path = f"spec.template.spec.containers[{c}].env[{e}].value"
                    yield from missing(
                        deployment, path, host, int(port) if port.isdigit() else port
                    )


def selectors(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """Services and policies select a workload; workloads run as a ServiceAccount that exists."""
    for service in mesh.of_kind("Service"):
        selector = as_dict(service.spec.get("selector"))
        if not _selected(mesh, selector, service.namespace):
            yield service.finding("spec.selector", f"{selector} selects no Deployment")
    for policy in mesh.of_kind("AuthorizationPolicy"):
        selector = as_dict(as_dict(policy.spec.get("selector")).get("matchLabels"))
        if selector and not _selected(mesh, selector, policy.namespace):
            yield policy.finding("spec.selector.matchLabels", f"{selector} selects no Deployment")
    for deployment in _workloads(mesh):
        pod = as_dict(as_dict(deployment.spec.get("template")).get("spec"))
        account = pod.get("serviceAccountName", "default")
        if mesh.get("ServiceAccount", str(account), deployment.namespace) is None:
            yield deployment.finding(
                "spec.template.spec.serviceAccountName",
                f"ServiceAccount {account!r} is not in the mesh",
            )


def subsets(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """Every subset a route names is defined for its host and selects a running version."""
    rules: dict[tuple[str, str], Resource] = {}
    for dr in mesh.of_kind("DestinationRule"):
        service = service_for_host(mesh, str(dr.spec.get("host", "")), dr.namespace)
        if service is not None:
            rules[(service.namespace, service.name)] = dr
            selector = as_dict(service.spec.get("selector"))
            for i, subset in enumerate(as_list(dr.spec.get("subsets"))):
                labels = {**selector, **as_dict(as_dict(subset).get("labels"))}
                if not _selected(mesh, labels, service.namespace):
                    yield dr.finding(f"spec.subsets[{i}].labels", f"{labels} selects no Deployment")
    for vs in mesh.of_kind("VirtualService"):
        for path, dest in _destinations(vs):
            if "subset" not in dest:
                continue
            service = service_for_host(mesh, str(dest.get("host", "")), vs.namespace)
            if service is None:
                continue  # reported by `hosts`
            rule = rules.get((service.namespace, service.name))
            names = (
                [as_dict(s).get("name") for s in as_list(rule.spec.get("subsets"))] if rule else []
            )
            if dest["subset"] not in names:
                yield vs.finding(
                    f"{path}.subset",
                    f"subset {dest['subset']!r} is not defined by a DestinationRule "
                    f"for {service.name}",
                )


def principals(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """Every principal in a policy is the identity of a ServiceAccount in the mesh."""
    for policy in mesh.of_kind("AuthorizationPolicy"):
        for i, rule in _policy_rules(policy):
            for path, value in _sources(rule):
                if value in PLATFORM_PRINCIPALS:
                    continue
                match = _PRINCIPAL.fullmatch(value)
                if match is None:
                    yield policy.finding(
                        f"spec.rules[{i}].{path}", f"{value!r} is not {principal('<sa>', '<ns>')}"
                    )
                elif mesh.get("ServiceAccount", match.group(2), match.group(1)) is None:
                    yield policy.finding(
                        f"spec.rules[{i}].{path}",
                        f"{value!r}: no ServiceAccount {match.group(2)} "
                        f"in namespace {match.group(1)}",
                    )


def methods(mesh: Mesh, contracts: Contracts) -> Iterator[Finding]:
    """Policy paths on gRPC workloads are methods the workload serves; the gateway's are on REST."""
    gateway = principal(REST_GATEWAY_ACCOUNT)
    for policy in mesh.of_kind("AuthorizationPolicy"):
        selector = as_dict(as_dict(policy.spec.get("selector")).get("matchLabels"))
        workloads = _selected(mesh, selector, policy.namespace) if selector else []
        apps = {str(_template_labels(d).get("app")) for d in workloads}
        shared = set.intersection(*(_serves(d) for d in workloads)) if workloads else set()
        grpc = any(_grpc_ports(c) for d in workloads for c in _containers(d))
        if not grpc:
            continue
        for i, rule in _policy_rules(policy):
            callers = {value for _, value in _sources(rule)}
            for path, value in _operation_paths(rule):
                where = f"spec.rules[{i}].{path}"
                service = value[1:].split("/")[0]
                package = service.rpartition(".")[0]
                if value not in contracts.methods:
                    yield policy.finding(where, f"{value!r} is not a gRPC method in the contracts")
                elif service not in shared and not any(
                    package.startswith(f"shop.{app}.") for app in apps
                ):
                    yield policy.finding(where, f"{value!r} is not served by {sorted(apps)}")
                elif gateway in callers and value not in contracts.rest_methods:
                    yield policy.finding(
                        where, f"{value!r} has no google.api.http binding, so REST cannot reach it"
                    )


def grpc_ports(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """A Service port in front of a gRPC port says so: named `grpc[-*]`, `appProtocol: grpc`."""
    for service in mesh.of_kind("Service"):
        workloads = _selected(mesh, as_dict(service.spec.get("selector")), service.namespace)
        for i, port in enumerate(_service_ports(service)):
            target: int | str = port.get("targetPort") or port.get("port", 0)
            name, protocol = str(port.get("name", "")), port.get("appProtocol")
            grpc = protocol == "grpc" or any(_is_grpc_port(d, target) for d in workloads)
            if not grpc:
                continue
            if name != "grpc" and not name.startswith("grpc-"):
                yield service.finding(
                    f"spec.ports[{i}].name", f"gRPC port is named {name!r}, not 'grpc'"
                )
            if protocol != "grpc":
                yield service.finding(
                    f"spec.ports[{i}].appProtocol",
                    f"gRPC port has appProtocol {protocol!r}, not 'grpc'",
                )


def baseline(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """Mesh-wide STRICT mTLS and a deny-all AuthorizationPolicy: the always-on floor."""
    source = mesh.scenario or mesh.root
    strict = [
        p
        for p in mesh.of_kind("PeerAuthentication")
        if p.namespace == ISTIO_ROOT_NAMESPACE
        and "selector" not in p.spec
        and as_dict(p.spec.get("mtls")).get("mode") == "STRICT"
    ]
    if not strict:
        yield Finding(
            source, "PeerAuthentication", "default", "spec.mtls.mode",
            f"no mesh-wide STRICT PeerAuthentication in {ISTIO_ROOT_NAMESPACE}",
        )  # fmt: skip
    namespaces = {r.namespace for r in mesh.of_kind("Deployment")}
    for namespace in sorted(namespaces):
        deny_all = [
            p
            for p in mesh.of_kind("AuthorizationPolicy")
            if p.namespace in (namespace, ISTIO_ROOT_NAMESPACE)
            and p.spec.get("action", "ALLOW") == "ALLOW"
            and not any(k in p.spec for k in ("selector", "targetRef", "targetRefs", "rules"))
        ]
        if not deny_all:
            yield Finding(
                source, "AuthorizationPolicy", "deny-all", "spec",
                f"no deny-all policy (ALLOW with an empty spec) for namespace {namespace}",
            )  # fmt: skip


def durations(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """Istio durations parse and are at least 1ms (the CRDs' CEL rule, which jsonschema skips)."""

    def walk(resource: Resource, node: Any, path: str) -> Iterator[Finding]:
        if isinstance(node, dict):
            for key, value in node.items():
                child = f"{path}.{key}"
                if key in DURATION_FIELDS and not isinstance(value, dict | list):
                    seconds = parse_duration(value) if isinstance(value, str) else None
                    if seconds is None:
                        yield resource.finding(
                            child, f"{value!r} is not a duration like 1.5s or 100ms"
                        )
                    elif seconds < 1e-3:
                        yield resource.finding(child, f"{value!r} is shorter than 1ms")
                else:
                    yield from walk(resource, value, child)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(resource, value, f"{path}[{i}]")

    for resource in mesh:
        if resource.group.endswith(".istio.io"):
            yield from walk(resource, resource.spec, "spec")


def route_conflicts(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """A Service is routed by a VirtualService or by a GRPCRoute, never by both."""
    routed = {
        (service.namespace, service.name): vs
        for vs in mesh.of_kind("VirtualService")
        if _mesh_bound(vs)
        for host in as_list(vs.spec.get("hosts"))
        if (service := service_for_host(mesh, str(host), vs.namespace)) is not None
    }
    for route in mesh.of_kind("GRPCRoute"):
        for i, parent in enumerate(as_list(route.spec.get("parentRefs"))):
            parent = as_dict(parent)
            vs = routed.get(
                (str(parent.get("namespace", route.namespace)), str(parent.get("name")))
            )
            if parent.get("kind") == "Service" and vs is not None:
                yield route.finding(
                    f"spec.parentRefs[{i}]",
                    f"Service {parent.get('name')} is also routed by VirtualService/{vs.name}",
                )


def secret_refs(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """Every secretKeyRef names a Secret in the mesh that has the key, and a DATABASE_URL (it
    carries credentials) comes from a Secret, never a literal value."""
    for workload in _workloads(mesh):
        for c, container in enumerate(_containers(workload)):
            for e, env in enumerate(map(as_dict, as_list(container.get("env")))):
                path = f"spec.template.spec.containers[{c}].env[{e}]"
                if env.get("name") == DATABASE_URL and "value" in env:
                    yield workload.finding(
                        f"{path}.value", f"{DATABASE_URL} must come from a Secret (secretKeyRef)"
                    )
                ref = as_dict(as_dict(env.get("valueFrom")).get("secretKeyRef"))
                if not ref or ref.get("optional") is True:
                    continue
                name, key = str(ref.get("name", "")), str(ref.get("key", ""))
                secret = mesh.get("Secret", name, workload.namespace)
                if secret is None:
                    yield workload.finding(
                        f"{path}.valueFrom.secretKeyRef.name", f"Secret {name!r} is not in the mesh"
                    )
                elif key not in {**as_dict(secret.doc.get("data")), **_string_data(secret)}:
                    yield workload.finding(
                        f"{path}.valueFrom.secretKeyRef.key", f"Secret {name} has no key {key!r}"
                    )


def database_ports(mesh: Mesh, _contracts: Contracts) -> Iterator[Finding]:
    """PostgreSQL's ports, on its pods and on the Services in front of them, are opaque TCP to
    Istio (`tcp`/`tcp-*`): it is server-first, so protocol sniffing stalls a client's connection
    and a gRPC or HTTP name makes the sidecars parse it as HTTP."""
    for workload in _workloads(mesh):
        containers = _containers(workload)
        if not any(_runs_postgres(c) for c in containers):
            continue
        for c, container in enumerate(containers):
            for p, port in enumerate(map(as_dict, as_list(container.get("ports")))):
                if not _tcp_name(str(port.get("name", ""))):
                    yield workload.finding(
                        f"spec.template.spec.containers[{c}].ports[{p}].name",
                        f"a PostgreSQL port is named {port.get('name')!r}, not 'tcp-*'",
                    )
    for service in mesh.of_kind("Service"):
        selected = _selected(mesh, as_dict(service.spec.get("selector")), service.namespace)
        if not any(_runs_postgres(c) for w in selected for c in _containers(w)):
            continue
        for i, port in enumerate(_service_ports(service)):
            name, protocol = str(port.get("name", "")), port.get("appProtocol", "tcp")
            if not _tcp_name(name) or protocol != "tcp":
                yield service.finding(
                    f"spec.ports[{i}]",
                    f"a PostgreSQL port is {name!r} (appProtocol {protocol!r}), "
                    "not 'tcp-*' (appProtocol 'tcp')",
                )


RULES: tuple[Rule, ...] = (
    weights,
    hosts,
    selectors,
    subsets,
    principals,
    methods,
    grpc_ports,
    baseline,
    durations,
    route_conflicts,
    secret_refs,
    database_ports,
)
