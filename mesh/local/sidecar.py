"""Render Envoy sidecar configuration from the mesh YAML, as istiod would for each workload.

Pure functions: a loaded `Mesh` plus the local port plan in, Envoy JSON out (a bootstrap that
watches a directory, and the LDS, CDS and RDS files written into it). Istio fields the local mesh
cannot honour raise `MeshError` naming the file, resource and field.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.check.model import Doc, Finding, Mesh, MeshError, Resource
from mesh.check.semantic import ISTIO_ROOT_NAMESPACE, parse_duration
from mesh.local.ca import Identity, spiffe_id

HOST = "127.0.0.1"
INBOUND_ROUTES = "inbound"
# Istio's defaults where a resource is silent (pilot/pkg/networking/core).
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_ATTEMPTS = 2
DEFAULT_CONNECT_TIMEOUT = "10s"
UNLIMITED = 4294967295
# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on policies, which Istio's retryOn passes on.
RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
GRPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
LB_POLICIES = {"ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST", "RANDOM": "RANDOM"}

JSON = dict[str, Any]


# --- the workloads and the local port plan -----------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One Deployment as the local mesh runs it: a process, its identity and its peers."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    account: str
    module: str  # what `python -m` runs
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
        template = _dict(deployment.spec.get("template"))
        pod = _dict(template.get("spec"))
        containers = [_dict(c) for c in _list(pod.get("containers"))]
        if not containers:
            raise _error(deployment, "spec.template.spec.containers", "no container")
        container = containers[0]
        command = [str(c) for c in _list(container.get("command"))]
        if "-m" not in command[:-1]:
            raise _error(
                deployment, "spec.template.spec.containers[0].command", "not `python -m MODULE`"
            )
        env = {
            str(e["name"]): str(e["value"])
            for e in map(_dict, _list(container.get("env")))
            if "name" in e and "value" in e
        }
        probed = {
            _dict(_dict(container.get(p)).get("grpc")).get("port")
            for p in ("readinessProbe", "livenessProbe")
        }
        ports = [_dict(p) for p in _list(container.get("ports"))]
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
                for k, v in _dict(_dict(template.get("metadata")).get("labels")).items()
            },
            account=str(pod.get("serviceAccountName", "default")),
            module=command[command.index("-m") + 1],
            port=port,
            grpc=bool(grpc_ports),
            env=env,
            peers=peers,
        )
    return found


# --- the bootstrap -------------------------------------------------------------------------


XDS_FILES = {"lds": "lds.json", "cds": "cds.json"}


def bootstrap(workload: Workload, xds_dir: Path, admin_port: int = 0) -> JSON:
    """A static bootstrap: the admin interface and LDS/CDS from files in a watched directory."""

    def source(path: Path) -> JSON:
        return {
            "path_config_source": {"path": str(path), "watched_directory": {"path": str(xds_dir)}},
            "resource_api_version": "V3",
        }

    return {
        "node": {
            "id": f"sidecar~{HOST}~{workload.name}.{workload.namespace}~local",
            "cluster": f"{workload.app}.{workload.namespace}",
            "metadata": {"WORKLOAD_NAME": workload.name, "SERVICE_ACCOUNT": workload.account},
        },
        "admin": {"address": _socket(HOST, admin_port)},
        "dynamic_resources": {
            "lds_config": source(xds_dir / XDS_FILES["lds"]),
            "cds_config": source(xds_dir / XDS_FILES["cds"]),
        },
    }


def static_config(bootstrap: JSON, rendered: Rendered) -> JSON:
    """The same sidecar with every resource inlined, for `envoy --mode validate` (which does
    not read dynamic resources)."""
    routes = {route["name"]: route for route in rendered.routes}
    listeners = copy.deepcopy(rendered.listeners)
    for listener in listeners:
        for chain in listener["filter_chains"]:
            for network in chain["filters"]:
                manager = network["typed_config"]
                manager["route_config"] = routes[manager.pop("rds")["route_config_name"]]
    static = {key: value for key, value in bootstrap.items() if key != "dynamic_resources"}
    return {**static, "static_resources": {"listeners": listeners, "clusters": rendered.clusters}}


def route_file(name: str) -> str:
    return f"rds-{name}.json"


# --- the dynamic resources -----------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """One sidecar's dynamic resources, by kind; each becomes one file in its xDS directory."""

    listeners: list[JSON]
    clusters: list[JSON]
    routes: list[JSON]

    def files(self, version: str) -> dict[str, JSON]:
        """File name -> DiscoveryResponse; one file per route configuration (RDS wants one)."""
        files = {
            XDS_FILES["lds"]: _response(version, "listener.v3.Listener", self.listeners),
            XDS_FILES["cds"]: _response(version, "cluster.v3.Cluster", self.clusters),
        }
        for route in self.routes:
            files[route_file(route["name"])] = _response(
                version, "route.v3.RouteConfiguration", [route]
            )
        return files


def render(
    mesh: Mesh,
    workload: Workload,
    plan: Mapping[str, Ports],
    identity: Identity,
    xds_dir: Path,
) -> Rendered:
    """Listeners, clusters and routes of `workload`'s sidecar."""
    every = workloads(mesh)
    ports = plan[workload.name]
    listeners, routes, clusters = [], [], {}
    if ports.inbound:
        listeners.append(_inbound_listener(mesh, workload, ports, identity, xds_dir))
        routes.append(_inbound_routes(mesh, workload, ports))
        app_cluster = _cluster_shell(_inbound_cluster_name(ports.app), "10s")
        app_cluster["load_assignment"] = _endpoints(app_cluster["name"], [ports.app])
        clusters[app_cluster["name"]] = app_cluster
    for host, port in sorted(ports.outbound.items()):
        route_config, targets = _outbound_routes(mesh, host)
        routes.append(route_config)
        listeners.append(_outbound_listener(mesh, workload, host, port, xds_dir))
        for target in targets:
            clusters.setdefault(target.name, _outbound_cluster(mesh, target, every, plan, identity))
    return Rendered(listeners, list(clusters.values()), routes)


# --- listeners -----------------------------------------------------------------------------


def _inbound_listener(
    mesh: Mesh, workload: Workload, ports: Ports, identity: Identity, xds_dir: Path
) -> JSON:
    filters = [
        {
            "name": "envoy.filters.http.rbac.deny",
            "typed_config": _typed("extensions.filters.http.rbac.v3.RBAC"),
        },
        {
            "name": "envoy.filters.http.rbac.allow",
            "typed_config": _typed("extensions.filters.http.rbac.v3.RBAC"),
        },
        _router(),
    ]
    filters = _patch_filters(mesh, workload, "SIDECAR_INBOUND", filters)
    tls = _typed(
        "extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        require_client_certificate=True,
        common_tls_context=_tls_context(identity),
    )
    return {
        "name": "inbound",
        "address": _socket(HOST, ports.inbound),
        "filter_chains": [
            {
                "filters": [_hcm("inbound", INBOUND_ROUTES, filters, xds_dir)],
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
            }
        ],
    }


def _outbound_listener(mesh: Mesh, workload: Workload, host: str, port: int, xds_dir: Path) -> JSON:
    filters = [
        {
            "name": "envoy.filters.http.fault",
            "typed_config": _typed("extensions.filters.http.fault.v3.HTTPFault"),
        },
        _router(),
    ]
    filters = _patch_filters(mesh, workload, "SIDECAR_OUTBOUND", filters)
    name = _outbound_routes_name(host)
    return {
        "name": name,
        "address": _socket(HOST, port),
        "filter_chains": [{"filters": [_hcm(name, name, filters, xds_dir)]}],
    }


def _hcm(stat_prefix: str, routes: str, filters: list[JSON], xds_dir: Path) -> JSON:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": _typed(
            "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            stat_prefix=stat_prefix,
            codec_type="AUTO",
            http2_protocol_options={},
            rds={
                "route_config_name": routes,
                "config_source": {
                    "path_config_source": {
                        "path": str(xds_dir / route_file(routes)),
                        "watched_directory": {"path": str(xds_dir)},
                    },
                    "resource_api_version": "V3",
                },
            },
            http_filters=filters,
        ),
    }


def _router() -> JSON:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": _typed("extensions.filters.http.router.v3.Router"),
    }


def _patch_filters(mesh: Mesh, workload: Workload, context: str, filters: list[JSON]) -> list[JSON]:
    """Apply the EnvoyFilters that select `workload` and patch HTTP filters in `context`.

    Only HTTP_FILTER patches relative to a named filter (or first) are supported: enough for a
    callee-side fault, which is how Istio users make a service flaky on purpose.
    """
    filters = list(filters)
    for resource in mesh.of_kind("EnvoyFilter"):
        if not _selects(
            _dict(_dict(resource.spec.get("workloadSelector")).get("labels")), resource, workload
        ):
            continue
        _only(resource, resource.spec, "spec", {"workloadSelector", "configPatches", "priority"})
        for i, patch in enumerate(map(_dict, _list(resource.spec.get("configPatches")))):
            where = f"spec.configPatches[{i}]"
            _only(resource, patch, where, {"applyTo", "match", "patch"})
            if patch.get("applyTo") != "HTTP_FILTER":
                raise _error(resource, f"{where}.applyTo", "only HTTP_FILTER is supported locally")
            match = _dict(patch.get("match"))
            _only(resource, match, f"{where}.match", {"context", "listener"})
            if match.get("context", "ANY") not in (context, "ANY"):
                continue
            listener = _dict(match.get("listener"))
            _only(resource, listener, f"{where}.match.listener", {"filterChain"})
            chain = _dict(listener.get("filterChain"))
            _only(resource, chain, f"{where}.match.listener.filterChain", {"filter"})
            network = _dict(chain.get("filter"))
            _only(
                resource,
                network,
                f"{where}.match.listener.filterChain.filter",
                {"name", "subFilter"},
            )
            if network.get("name", "envoy.filters.network.http_connection_manager") != (
                "envoy.filters.network.http_connection_manager"
            ):
                raise _error(
                    resource,
                    f"{where}.match.listener.filterChain.filter.name",
                    "only the HTTP connection manager",
                )
            anchor = _dict(network.get("subFilter")).get("name")
            operation = _dict(patch.get("patch"))
            _only(resource, operation, f"{where}.patch", {"operation", "value"})
            value = _dict(operation.get("value"))
            if not value.get("name"):
                raise _error(resource, f"{where}.patch.value.name", "an HTTP filter needs a name")
            names = [f["name"] for f in filters]
            kind = operation.get("operation")
            if kind == "INSERT_FIRST":
                filters.insert(0, value)
            elif kind in ("INSERT_BEFORE", "INSERT_AFTER"):
                if anchor not in names:
                    raise _error(
                        resource,
                        f"{where}.match.listener.filterChain.filter.subFilter.name",
                        f"{anchor!r} is not one of {names}",
                    )
                filters.insert(names.index(anchor) + (kind == "INSERT_AFTER"), value)
            else:
                raise _error(
                    resource,
                    f"{where}.patch.operation",
                    "use INSERT_BEFORE, INSERT_AFTER or INSERT_FIRST",
                )
    return filters


# --- inbound: authorization ----------------------------------------------------------------


def _inbound_routes(mesh: Mesh, workload: Workload, ports: Ports) -> JSON:
    """One route to the app, carrying the RBAC rules so that a policy change applies at once."""
    rules: dict[str, list[tuple[Resource, int, Doc]]] = {"ALLOW": [], "DENY": []}
    allow_policies = 0
    for policy in mesh.of_kind("AuthorizationPolicy"):
        selector = _dict(_dict(policy.spec.get("selector")).get("matchLabels"))
        if policy.namespace not in (workload.namespace, ISTIO_ROOT_NAMESPACE):
            continue
        if not _selects(selector, policy, workload):
            continue
        _only(policy, policy.spec, "spec", {"selector", "action", "rules"})
        action = str(policy.spec.get("action", "ALLOW"))
        if action not in rules:
            raise _error(policy, "spec.action", f"{action} is not supported locally (ALLOW, DENY)")
        allow_policies += action == "ALLOW"
        for i, rule in enumerate(map(_dict, _list(policy.spec.get("rules")))):
            rules[action].append((policy, i, rule))

    def per_route(action: str) -> JSON:
        if (action == "ALLOW" and not allow_policies) or (action == "DENY" and not rules["DENY"]):
            return _typed("extensions.filters.http.rbac.v3.RBACPerRoute")  # no rules: no say
        policies = {f"{p.name}[{i}]": _rbac_policy(p, i, rule) for p, i, rule in rules[action]}
        return _typed(
            "extensions.filters.http.rbac.v3.RBACPerRoute",
            rbac={"rules": {"action": action, "policies": policies}},
        )

    return {
        "name": INBOUND_ROUTES,
        "virtual_hosts": [
            {
                "name": "inbound",
                "domains": ["*"],
                "routes": [
                    {
                        "name": "app",
                        "match": {"prefix": "/"},
                        "route": {"cluster": _inbound_cluster_name(ports.app), "timeout": "0s"},
                        "typed_per_filter_config": {
                            "envoy.filters.http.rbac.deny": per_route("DENY"),
                            "envoy.filters.http.rbac.allow": per_route("ALLOW"),
                        },
                    }
                ],
            }
        ],
    }


def _rbac_policy(policy: Resource, index: int, rule: Doc) -> JSON:
    """An Istio rule: any source, and any operation (each a conjunction of its fields)."""
    where = f"spec.rules[{index}]"
    _only(policy, rule, where, {"from", "to"})
    principals = []
    for j, source in enumerate(_dict(f).get("source") for f in _list(rule.get("from"))):
        source = _dict(source)
        _only(
            policy,
            source,
            f"{where}.from[{j}].source",
            {"principals", "notPrincipals", "namespaces", "notNamespaces"},
        )
        ids = []
        for key, negate in (("principals", False), ("notPrincipals", True)):
            if key in source:
                any_of = {"or_ids": {"ids": [_principal(str(v)) for v in _list(source[key])]}}
                ids.append({"not_id": any_of} if negate else any_of)
        for key, negate in (("namespaces", False), ("notNamespaces", True)):
            if key in source:
                any_of = {"or_ids": {"ids": [_namespace(str(v)) for v in _list(source[key])]}}
                ids.append({"not_id": any_of} if negate else any_of)
        principals.append({"and_ids": {"ids": ids}} if ids else {"any": True})
    permissions = []
    for j, to in enumerate(_dict(t).get("operation") for t in _list(rule.get("to"))):
        operation = _dict(to)
        _only(
            policy,
            operation,
            f"{where}.to[{j}].operation",
            {"paths", "notPaths", "methods", "notMethods"},
        )
        rules = []
        for key, negate in (("paths", False), ("notPaths", True)):
            if key in operation:
                any_of = {
                    "or_rules": {
                        "rules": [
                            {"url_path": {"path": _string_match(str(v))}}
                            for v in _list(operation[key])
                        ]
                    }
                }
                rules.append({"not_rule": any_of} if negate else any_of)
        for key, negate in (("methods", False), ("notMethods", True)):
            if key in operation:
                any_of = {
                    "or_rules": {
                        "rules": [
                            {"header": {"name": ":method", "string_match": {"exact": str(v)}}}
                            for v in _list(operation[key])
                        ]
                    }
                }
                rules.append({"not_rule": any_of} if negate else any_of)
        permissions.append({"and_rules": {"rules": rules}} if rules else {"any": True})
    return {
        "permissions": permissions or [{"any": True}],
        "principals": principals or [{"any": True}],
    }


def _principal(value: str) -> JSON:
    """Istio principals are SPIFFE ids without the scheme; `*` wildcards at either end."""
    if value == "*":
        return {"authenticated": {"principal_name": {"safe_regex": {"regex": ".+"}}}}
    if value.endswith("*"):
        return {"authenticated": {"principal_name": {"prefix": f"spiffe://{value[:-1]}"}}}
    if value.startswith("*"):
        return {"authenticated": {"principal_name": {"suffix": value[1:]}}}
    return {"authenticated": {"principal_name": {"exact": f"spiffe://{value}"}}}


def _namespace(value: str) -> JSON:
    return {"authenticated": {"principal_name": {"prefix": f"spiffe://cluster.local/ns/{value}/"}}}


def _string_match(value: str) -> JSON:
    if value == "*":
        return {"safe_regex": {"regex": ".*"}}
    if value.endswith("*"):
        return {"prefix": value[:-1]}
    if value.startswith("*"):
        return {"suffix": value[1:]}
    return {"exact": value}


# --- outbound: routes ----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Target:
    """An upstream cluster: a Service (and subset) on one of its ports."""

    host: str
    port: int
    subset: str = ""

    @property
    def name(self) -> str:
        return f"outbound|{self.port}|{self.subset}|{self.host}"


def _outbound_routes_name(host: str) -> str:
    return f"outbound_{host}"


def _outbound_routes(mesh: Mesh, host: str) -> tuple[JSON, list[Target]]:
    """The routes for calls to `host`: from its VirtualService or GRPCRoute, or a default."""
    service = _service(mesh, host)
    if service is None:
        raise MeshError(
            [
                Finding(
                    mesh.root,
                    "Service",
                    host,
                    "metadata.name",
                    "a workload calls it, but no Service has that name",
                )
            ]
        )
    virtual = [vs for vs in mesh.of_kind("VirtualService") if _routes_host(vs, service)]
    grpc = [
        r
        for r in mesh.of_kind("GRPCRoute")
        if any(
            _dict(p).get("kind") == "Service" and _dict(p).get("name") == service.name
            for p in _list(r.spec.get("parentRefs"))
        )
    ]
    if len(virtual) + len(grpc) > 1:
        names = ", ".join(f"{r.kind}/{r.name} ({r.source})" for r in [*virtual, *grpc])
        raise _error((virtual + grpc)[-1], "spec", f"more than one route for host {host}: {names}")
    if virtual:
        routes, targets = _virtual_service_routes(mesh, virtual[0])
    elif grpc:
        routes, targets = _grpc_route_routes(mesh, grpc[0])
    else:
        target = Target(service.name, _service_port(service))
        # No route resource: Istio's defaults (no timeout, its default retries).
        action = {"cluster": target.name, "timeout": "0s", **_retry_policy(service, "", None)}
        routes, targets = [_route("default", {"prefix": "/"}, action, None)], [target]
    name = _outbound_routes_name(host)
    config = {"name": name, "virtual_hosts": [{"name": host, "domains": ["*"], "routes": routes}]}
    return config, sorted(set(targets))


def _virtual_service_routes(mesh: Mesh, vs: Resource) -> tuple[list[JSON], list[Target]]:
    _only(vs, vs.spec, "spec", {"hosts", "gateways", "http", "exportTo"})
    routes, targets = [], []
    for i, http in enumerate(map(_dict, _list(vs.spec.get("http")))):
        where = f"spec.http[{i}]"
        _only(vs, http, where, {"name", "match", "route", "timeout", "retries", "fault", "headers"})
        destinations = []
        for j, entry in enumerate(map(_dict, _list(http.get("route")))):
            _only(vs, entry, f"{where}.route[{j}]", {"destination", "weight", "headers"})
            dest = _dict(entry.get("destination"))
            _only(vs, dest, f"{where}.route[{j}].destination", {"host", "subset", "port"})
            service = _service(mesh, str(dest.get("host", "")))
            if service is None:
                raise _error(
                    vs, f"{where}.route[{j}].destination.host", "not a Service in the mesh"
                )
            port = int(_dict(dest.get("port")).get("number") or _service_port(service))
            target = Target(service.name, port, str(dest.get("subset", "")))
            targets.append(target)
            destinations.append(
                (target, int(entry.get("weight", 100)), _headers(vs, entry, f"{where}.route[{j}]"))
            )
        if not destinations:
            raise _error(
                vs, f"{where}.route", "no destination (redirects are not supported locally)"
            )
        if len(destinations) == 1:
            action: JSON = {"cluster": destinations[0][0].name}
            route_headers = {**_headers(vs, http, where), **destinations[0][2]}
        else:
            action = {
                "weighted_clusters": {
                    "clusters": [
                        {"name": target.name, "weight": weight, **headers}
                        for target, weight, headers in destinations
                        if weight > 0
                    ]
                }
            }
            route_headers = _headers(vs, http, where)
        action["timeout"] = _duration(vs, f"{where}.timeout", http.get("timeout", "0s"))
        action.update(
            _retry_policy(vs, where, _dict(http.get("retries")) if "retries" in http else None)
        )
        fault = _fault(vs, where, _dict(http.get("fault"))) if "fault" in http else None
        matches = list(map(_dict, _list(http.get("match")))) or [{}]
        for k, match in enumerate(matches):
            name = str(http.get("name") or f"{vs.name}-{i}") + (f"-{k}" if len(matches) > 1 else "")
            routes.append(
                _route(name, _match(vs, f"{where}.match[{k}]", match), action, fault, route_headers)
            )
    return routes, targets


def _grpc_route_routes(mesh: Mesh, route: Resource) -> tuple[list[JSON], list[Target]]:
    """Gateway API GRPCRoute (GAMMA): backendRefs name Services; weights are proportions."""
    routes, targets = [], []
    for i, rule in enumerate(map(_dict, _list(route.spec.get("rules")))):
        where = f"spec.rules[{i}]"
        _only(route, rule, where, {"matches", "backendRefs", "name"})
        backends = []
        for j, ref in enumerate(map(_dict, _list(rule.get("backendRefs")))):
            _only(
                route,
                ref,
                f"{where}.backendRefs[{j}]",
                {"name", "port", "weight", "kind", "group", "namespace"},
            )
            service = _service(mesh, str(ref.get("name", "")))
            if service is None:
                raise _error(route, f"{where}.backendRefs[{j}].name", "not a Service in the mesh")
            target = Target(service.name, int(ref.get("port") or _service_port(service)))
            targets.append(target)
            backends.append((target, int(ref.get("weight", 1))))
        action: JSON = (
            {"cluster": backends[0][0].name}
            if len(backends) == 1
            else {
                "weighted_clusters": {
                    "clusters": [{"name": t.name, "weight": w} for t, w in backends if w > 0]
                }
            }
        )
        action.update(timeout="0s", **_retry_policy(route, where, None))
        matches = list(map(_dict, _list(rule.get("matches")))) or [{}]
        for k, match in enumerate(matches):
            _only(route, match, f"{where}.matches[{k}]", {"method", "headers"})
            method = _dict(match.get("method"))
            service_name, method_name = method.get("service"), method.get("method")
            path: JSON = {"prefix": "/"}
            if service_name and method_name:
                path = {"path": f"/{service_name}/{method_name}"}
            elif service_name:
                path = {"prefix": f"/{service_name}/"}
            headers = [
                {"name": str(h.get("name")), "string_match": {"exact": str(h.get("value"))}}
                for h in map(_dict, _list(match.get("headers")))
            ]
            routes.append(
                _route(
                    f"{route.name}-{i}-{k}",
                    {**path, **({"headers": headers} if headers else {})},
                    action,
                    None,
                )
            )
    return routes, targets


def _route(
    name: str, match: JSON, action: JSON, fault: JSON | None, headers: JSON | None = None
) -> JSON:
    route: JSON = {
        "name": name,
        "match": match,
        # Let each call's gRPC deadline bound it, as Istio does.
        "route": {**action, "max_stream_duration": {"grpc_timeout_header_max": "0s"}},
        **(headers or {}),
    }
    if fault:
        route["typed_per_filter_config"] = {"envoy.filters.http.fault": fault}
    return route


def _match(vs: Resource, where: str, match: Doc) -> JSON:
    _only(vs, match, where, {"name", "uri", "headers"})
    result: JSON = {"prefix": "/"}
    uri = _dict(match.get("uri"))
    if uri:
        result = _string_predicate(
            vs, f"{where}.uri", uri, {"exact": "path", "prefix": "prefix", "regex": "safe_regex"}
        )
    headers = []
    for name, condition in _dict(match.get("headers")).items():
        matcher = _string_predicate(
            vs,
            f"{where}.headers.{name}",
            _dict(condition),
            {"exact": "exact", "prefix": "prefix", "regex": "safe_regex"},
        )
        headers.append({"name": str(name), "string_match": matcher})
    if headers:
        result["headers"] = headers
    return result


def _string_predicate(
    resource: Resource, where: str, condition: Doc, keys: Mapping[str, str]
) -> JSON:
    _only(resource, condition, where, set(keys))
    if len(condition) != 1:
        raise _error(resource, where, f"needs exactly one of {sorted(keys)}")
    key, value = next(iter(condition.items()))
    if key == "regex":
        return {keys[key]: {"regex": str(value)}}
    return {keys[key]: str(value)}


def _headers(resource: Resource, node: Doc, where: str) -> JSON:
    """Istio `headers.{request,response}.{set,add,remove}` as Envoy header mutations."""
    headers = _dict(node.get("headers"))
    _only(resource, headers, f"{where}.headers", {"request", "response"})
    result: JSON = {}
    for direction in ("request", "response"):
        ops = _dict(headers.get(direction))
        _only(resource, ops, f"{where}.headers.{direction}", {"set", "add", "remove"})
        to_add = [
            {
                "header": {"key": str(k), "value": str(v)},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
            for k, v in _dict(ops.get("set")).items()
        ] + [
            {"header": {"key": str(k), "value": str(v)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
            for k, v in _dict(ops.get("add")).items()
        ]
        if to_add:
            result[f"{direction}_headers_to_add"] = to_add
        if ops.get("remove"):
            result[f"{direction}_headers_to_remove"] = [str(h) for h in _list(ops["remove"])]
    return result


def _retry_policy(resource: Resource, where: str, retries: Doc | None) -> JSON:
    """Istio's retry semantics: a default policy when silent, `attempts: 0` turns retries off."""
    if retries is None:
        retries = {}
    _only(
        resource,
        retries,
        f"{where}.retries",
        {"attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities"},
    )
    attempts = int(retries.get("attempts", DEFAULT_ATTEMPTS))
    if attempts == 0:
        return {}
    policies, codes = [], []
    for name in str(retries.get("retryOn", DEFAULT_RETRY_ON)).split(","):
        name = name.strip()
        if name.isdigit():
            codes.append(int(name))
        elif name in RETRY_ON:
            policies.append(name)
        else:
            raise _error(
                resource,
                f"{where}.retries.retryOn",
                f"{name!r} is not a retry policy: {', '.join(sorted(RETRY_ON))} or an HTTP status",
            )
    if codes and "retriable-status-codes" not in policies:
        policies.append("retriable-status-codes")
    if "retryOn" not in retries:
        codes = [503]
    policy: JSON = {
        "retry_on": ",".join(policies),
        "num_retries": attempts,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": _typed(
                    "extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                ),
            }
        ],
        "host_selection_retry_max_attempts": 5,
    }
    if codes:
        policy["retriable_status_codes"] = codes
    if "perTryTimeout" in retries:
        policy["per_try_timeout"] = _duration(
            resource, f"{where}.retries.perTryTimeout", retries["perTryTimeout"]
        )
    return {"retry_policy": policy}


def _fault(resource: Resource, where: str, fault: Doc) -> JSON:
    _only(resource, fault, f"{where}.fault", {"delay", "abort"})
    config: JSON = {}
    delay = _dict(fault.get("delay"))
    if delay:
        _only(resource, delay, f"{where}.fault.delay", {"fixedDelay", "percentage"})
        config["delay"] = {
            "fixed_delay": _duration(
                resource, f"{where}.fault.delay.fixedDelay", delay.get("fixedDelay")
            ),
            "percentage": _percentage(delay),
        }
    abort = _dict(fault.get("abort"))
    if abort:
        _only(resource, abort, f"{where}.fault.abort", {"httpStatus", "grpcStatus", "percentage"})
        if "grpcStatus" in abort:
            code = GRPC_CODES.get(str(abort["grpcStatus"]))
            if code is None:
                raise _error(
                    resource,
                    f"{where}.fault.abort.grpcStatus",
                    f"{abort['grpcStatus']!r} is not a gRPC status name",
                )
            config["abort"] = {"grpc_status": code, "percentage": _percentage(abort)}
        elif "httpStatus" in abort:
            config["abort"] = {
                "http_status": int(abort["httpStatus"]),
                "percentage": _percentage(abort),
            }
        else:
            raise _error(resource, f"{where}.fault.abort", "needs grpcStatus or httpStatus")
    return _typed("extensions.filters.http.fault.v3.HTTPFault", **config)


def _percentage(node: Doc) -> JSON:
    value = float(_dict(node.get("percentage")).get("value", 100))
    return {"numerator": round(value * 10_000), "denominator": "MILLION"}


# --- outbound: clusters --------------------------------------------------------------------


def _outbound_cluster(
    mesh: Mesh,
    target: Target,
    every: Mapping[str, Workload],
    plan: Mapping[str, Ports],
    identity: Identity,
) -> JSON:
    service = _service(mesh, target.host)
    assert service is not None  # routes resolved it
    rule = next(
        (
            dr
            for dr in mesh.of_kind("DestinationRule")
            if _service(mesh, str(dr.spec.get("host", ""))) == service
        ),
        None,
    )
    selector = {str(k): str(v) for k, v in _dict(service.spec.get("selector")).items()}
    policy: Doc = {}
    if rule is not None:
        _only(rule, rule.spec, "spec", {"host", "trafficPolicy", "subsets", "exportTo"})
        policy = _dict(rule.spec.get("trafficPolicy"))
    if target.subset:
        subsets = (
            {str(_dict(s).get("name")): _dict(s) for s in _list(rule.spec.get("subsets"))}
            if rule
            else {}
        )
        if target.subset not in subsets:
            raise MeshError(
                [
                    Finding(
                        service.source,
                        "Service",
                        service.name,
                        "subsets",
                        f"no DestinationRule subset {target.subset!r}",
                    )
                ]
            )
        subset = subsets[target.subset]
        selector.update({str(k): str(v) for k, v in _dict(subset.get("labels")).items()})
        policy = {**policy, **_dict(subset.get("trafficPolicy"))}
    members = [
        w
        for w in every.values()
        if all(w.labels.get(k) == v for k, v in selector.items())
        and w.namespace == service.namespace
    ]
    ports = [plan[w.name].inbound for w in members if w.name in plan and plan[w.name].inbound]
    where = rule if rule is not None else service
    _only(
        where,
        policy,
        "spec.trafficPolicy",
        {"tls", "connectionPool", "outlierDetection", "loadBalancer"},
    )
    pool = _dict(policy.get("connectionPool"))
    _only(where, pool, "spec.trafficPolicy.connectionPool", {"tcp", "http"})
    tcp, http = _dict(pool.get("tcp")), _dict(pool.get("http"))
    _only(where, tcp, "spec.trafficPolicy.connectionPool.tcp", {"maxConnections", "connectTimeout"})
    _only(
        where,
        http,
        "spec.trafficPolicy.connectionPool.http",
        {
            "http1MaxPendingRequests",
            "http2MaxRequests",
            "maxRetries",
            "maxRequestsPerConnection",
            "idleTimeout",
        },
    )
    cluster = _cluster_shell(
        target.name,
        _duration(
            where,
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            tcp.get("connectTimeout", DEFAULT_CONNECT_TIMEOUT),
        ),
    )
    cluster["load_assignment"] = _endpoints(target.name, ports)
    cluster["circuit_breakers"] = {
        "thresholds": [
            {
                "max_connections": int(tcp.get("maxConnections", UNLIMITED)),
                "max_pending_requests": int(http.get("http1MaxPendingRequests", UNLIMITED)),
                "max_requests": int(http.get("http2MaxRequests", UNLIMITED)),
                "max_retries": int(http.get("maxRetries", UNLIMITED)),
            }
        ]
    }
    balancer = _dict(policy.get("loadBalancer"))
    _only(where, balancer, "spec.trafficPolicy.loadBalancer", {"simple"})
    simple = str(balancer.get("simple", "LEAST_REQUEST"))
    if simple not in LB_POLICIES:
        raise _error(
            where,
            "spec.trafficPolicy.loadBalancer.simple",
            f"{simple} is not one of {sorted(LB_POLICIES)}",
        )
    cluster["lb_policy"] = LB_POLICIES[simple]
    outlier = _dict(policy.get("outlierDetection"))
    if outlier:
        cluster.update(_outlier_detection(where, outlier))
    tls = _dict(policy.get("tls"))
    _only(where, tls, "spec.trafficPolicy.tls", {"mode", "sni"})
    mode = str(tls.get("mode", "ISTIO_MUTUAL"))  # auto mTLS: the mesh is STRICT
    if mode == "ISTIO_MUTUAL":
        accounts = sorted({w.account for w in members})
        context = _tls_context(identity)
        context["validation_context"]["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"exact": spiffe_id(a, service.namespace)}}
            for a in accounts
        ]
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": _typed(
                "extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                common_tls_context=context,
                sni=str(tls.get("sni") or _sni(target, service.namespace)),
            ),
        }
    elif mode != "DISABLE":
        raise _error(
            where,
            "spec.trafficPolicy.tls.mode",
            f"{mode} is not supported locally (ISTIO_MUTUAL, DISABLE)",
        )
    return cluster


def _outlier_detection(where: Resource, outlier: Doc) -> JSON:
    path = "spec.trafficPolicy.outlierDetection"
    _only(
        where,
        outlier,
        path,
        {
            "consecutive5xxErrors",
            "consecutiveGatewayErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
            "minHealthPercent",
        },
    )
    detection: JSON = {"enforcing_success_rate": 0}  # Istio ejects on consecutive errors only
    if "consecutive5xxErrors" in outlier:
        detection["consecutive_5xx"] = int(outlier["consecutive5xxErrors"])
        detection["enforcing_consecutive_5xx"] = 100 if int(outlier["consecutive5xxErrors"]) else 0
    if "consecutiveGatewayErrors" in outlier:
        detection["consecutive_gateway_failure"] = int(outlier["consecutiveGatewayErrors"])
        detection["enforcing_consecutive_gateway_failure"] = 100
    for key, envoy_key in (("interval", "interval"), ("baseEjectionTime", "base_ejection_time")):
        if key in outlier:
            detection[envoy_key] = _duration(where, f"{path}.{key}", outlier[key])
    if "maxEjectionPercent" in outlier:
        detection["max_ejection_percent"] = int(outlier["maxEjectionPercent"])
    # Istio turns Envoy's panic mode off unless minHealthPercent asks for it.
    panic = float(outlier.get("minHealthPercent", 0))
    return {
        "outlier_detection": detection,
        "common_lb_config": {"healthy_panic_threshold": {"value": panic}},
    }


def _cluster_shell(name: str, connect_timeout: str) -> JSON:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        # gRPC upstreams must be HTTP/2, or calls fail with "protocol error".
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        },
    }


def _endpoints(name: str, ports: Iterable[int]) -> JSON:
    return {
        "cluster_name": name,
        "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _socket(HOST, p)}} for p in ports]}
        ],
    }


def _sni(target: Target, namespace: str) -> str:
    """Istio's SNI for a cluster: a name per port, subset and host."""
    fqdn = f"{target.host}.{namespace}.svc.cluster.local"
    return f"outbound_.{target.port}_.{target.subset}_.{fqdn}"


def _inbound_cluster_name(port: int) -> str:
    return f"inbound|{port}||"


def _tls_context(identity: Identity) -> JSON:
    return {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
        "alpn_protocols": ["h2"],
        "tls_certificates": [
            {
                "certificate_chain": {"filename": str(identity.cert)},
                "private_key": {"filename": str(identity.key)},
            }
        ],
        "validation_context": {"trusted_ca": {"filename": str(identity.ca)}},
    }


# --- helpers -------------------------------------------------------------------------------


def _response(version: str, kind: str, resources: list[JSON]) -> JSON:
    url = f"type.googleapis.com/envoy.config.{kind}"
    return {"version_info": version, "resources": [{"@type": url, **r} for r in resources]}


def _typed(kind: str, **fields: Any) -> JSON:
    return {"@type": f"type.googleapis.com/envoy.{kind}", **fields}


def _socket(address: str, port: int) -> JSON:
    return {"socket_address": {"address": address, "port_value": port}}


def _service(mesh: Mesh, host: str) -> Resource | None:
    short = host.split(".")[0]
    return mesh.get("Service", short)


def _service_port(service: Resource) -> int:
    ports = [_dict(p) for p in _list(service.spec.get("ports"))]
    if len(ports) != 1:
        raise _error(service, "spec.ports", "name a port: the Service has more than one")
    return int(ports[0]["port"])


def _routes_host(vs: Resource, service: Resource) -> bool:
    gateways = _list(vs.spec.get("gateways"))
    if gateways and "mesh" not in gateways:
        return False
    return any(str(h).split(".")[0] == service.name for h in _list(vs.spec.get("hosts")))


def _selects(labels: Mapping[str, Any], resource: Resource, workload: Workload) -> bool:
    if resource.namespace not in (workload.namespace, ISTIO_ROOT_NAMESPACE):
        return False
    return all(workload.labels.get(str(k)) == str(v) for k, v in labels.items())


def _duration(resource: Resource, where: str, value: Any) -> str:
    seconds = parse_duration(str(value)) if value is not None else None
    if seconds is None:
        raise _error(resource, where, f"{value!r} is not a duration like 1.5s or 100ms")
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


def _only(resource: Resource, node: Doc, where: str, allowed: Iterable[str]) -> None:
    """Refuse fields the local mesh would silently ignore: better an error than a wrong demo."""
    extra = sorted(set(node) - set(allowed))
    if extra:
        raise _error(resource, f"{where}.{extra[0]}", "not supported by the local mesh")


def _error(resource: Resource, where: str, message: str) -> MeshError:
    return MeshError([resource.finding(where, message)])


def _dict(value: Any) -> Doc:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
