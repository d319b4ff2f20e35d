"""Render each workload's Envoy sidecar from the mesh YAML, as istiod would.

Pure functions: a loaded `Mesh` plus the local port plan in, Envoy JSON out (a bootstrap that
watches a directory, and the LDS, CDS and RDS files written into it).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mesh.check.model import Mesh
from mesh.local import mtls
from mesh.local.authorization import INBOUND_ROUTES, inbound_routes
from mesh.local.ca import Identity
from mesh.local.clusters import inbound_cluster, outbound_cluster
from mesh.local.envoy_filters import patch_http_filters
from mesh.local.routes import outbound_routes, outbound_routes_name
from mesh.local.stack import HOST
from mesh.local.telemetry import trace_policy
from mesh.local.workloads import Ports, workloads
from mesh.local.xds import JSON, discovery_response, file_source, socket_address, typed
from runner.envoy_tracing import RUNTIME, Tracing
from services.runtime.topology import Workload

XDS_FILES = {"lds": "lds.json", "cds": "cds.json"}


def bootstrap(workload: Workload, xds_dir: Path, admin_port: int = 0) -> JSON:
    """A static bootstrap: the admin interface and LDS/CDS from files in a watched directory."""
    return {
        "node": {
            "id": f"sidecar~{HOST}~{workload.name}.{workload.namespace}~local",
            "cluster": f"{workload.app}.{workload.namespace}",
            "metadata": {"WORKLOAD_NAME": workload.name, "SERVICE_ACCOUNT": workload.account},
        },
        "admin": {"address": socket_address(admin_port)},
        "layered_runtime": RUNTIME,
        "dynamic_resources": {
            "lds_config": file_source(xds_dir / XDS_FILES["lds"], xds_dir),
            "cds_config": file_source(xds_dir / XDS_FILES["cds"], xds_dir),
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


@dataclass(frozen=True)
class Rendered:
    """One sidecar's dynamic resources, by kind; each becomes one file in its xDS directory."""

    listeners: list[JSON]
    clusters: list[JSON]
    routes: list[JSON]

    def files(self, version: str) -> dict[str, JSON]:
        """File name -> DiscoveryResponse; one file per route configuration (RDS wants one)."""
        files = {
            XDS_FILES["lds"]: discovery_response(version, "listener.v3.Listener", self.listeners),
            XDS_FILES["cds"]: discovery_response(version, "cluster.v3.Cluster", self.clusters),
        }
        for route in self.routes:
            files[route_file(route["name"])] = discovery_response(
                version, "route.v3.RouteConfiguration", [route]
            )
        return files


def render(
    mesh: Mesh,
    workload: Workload,
    plan: Mapping[str, Ports],
    identity: Identity,
    xds_dir: Path,
    otlp_endpoint: str = "",
) -> Rendered:
    """Listeners, clusters and routes of `workload`'s sidecar; with `otlp_endpoint`, spans go
    there as the mesh's Telemetry says."""
    every = workloads(mesh)
    ports = plan[workload.name]
    listeners, routes, clusters = [], [], {}
    tracing = trace_policy(mesh, workload).tracing(otlp_endpoint)
    if tracing is not None:
        collector = tracing.cluster()
        clusters[collector["name"]] = collector
    trace = _tracer(workload, tracing)
    if ports.inbound:
        listeners.append(_inbound_listener(mesh, workload, ports, identity, xds_dir, trace))
        routes.append(inbound_routes(mesh, workload, ports))
        app_cluster = inbound_cluster(ports.app)
        clusters[app_cluster["name"]] = app_cluster
    for host, port in sorted(ports.outbound.items()):
        route_config, targets = outbound_routes(mesh, host)
        routes.append(route_config)
        listeners.append(_outbound_listener(mesh, workload, host, port, xds_dir, trace))
        for target in targets:
            clusters.setdefault(target.name, outbound_cluster(mesh, target, every, plan, identity))
    return Rendered(listeners, list(clusters.values()), routes)


def _tracer(workload: Workload, tracing: Tracing | None) -> JSON:
    """HCM `tracing`, with Istio's default service name for a proxy's spans: app.namespace."""
    if tracing is None:
        return {}
    # Spans are named by the gRPC method, as the apps name theirs.
    service = f"{workload.app}.{workload.namespace}"
    return {"tracing": tracing.http_tracing(service, "%REQ(:PATH)%")}


def _inbound_listener(
    mesh: Mesh,
    workload: Workload,
    ports: Ports,
    identity: Identity,
    xds_dir: Path,
    trace: JSON,
) -> JSON:
    filters = [
        # Counts every call by method and gRPC status, denials included (the RED metrics).
        {
            "name": "envoy.filters.http.grpc_stats",
            "typed_config": typed(
                "extensions.filters.http.grpc_stats.v3.FilterConfig", stats_for_all_methods=True
            ),
        },
        _http_filter("envoy.filters.http.rbac.deny", "rbac.v3.RBAC"),
        _http_filter("envoy.filters.http.rbac.allow", "rbac.v3.RBAC"),
        _http_filter("envoy.filters.http.router", "router.v3.Router"),
    ]
    filters = patch_http_filters(mesh, workload, "SIDECAR_INBOUND", filters)
    return {
        "name": "inbound",
        "address": socket_address(ports.inbound),
        # The direction makes the span a SERVER span here, a CLIENT span on outbound.
        "traffic_direction": "INBOUND",
        "filter_chains": [
            {
                "filters": [_hcm("inbound", INBOUND_ROUTES, filters, xds_dir, trace)],
                "transport_socket": mtls.downstream(identity),
            }
        ],
    }


def _outbound_listener(
    mesh: Mesh, workload: Workload, host: str, port: int, xds_dir: Path, trace: JSON
) -> JSON:
    filters = [
        _http_filter("envoy.filters.http.fault", "fault.v3.HTTPFault"),
        _http_filter("envoy.filters.http.router", "router.v3.Router"),
    ]
    filters = patch_http_filters(mesh, workload, "SIDECAR_OUTBOUND", filters)
    name = outbound_routes_name(host)
    return {
        "name": name,
        "address": socket_address(port),
        "traffic_direction": "OUTBOUND",
        "filter_chains": [{"filters": [_hcm(name, name, filters, xds_dir, trace)]}],
    }


def _hcm(stat_prefix: str, routes: str, filters: list[JSON], xds_dir: Path, trace: JSON) -> JSON:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": typed(
            "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            stat_prefix=stat_prefix,
            codec_type="AUTO",
            http2_protocol_options={},
            rds={
                "route_config_name": routes,
                "config_source": file_source(xds_dir / route_file(routes), xds_dir),
            },
            http_filters=filters,
            **trace,
        ),
    }


def _http_filter(name: str, kind: str) -> JSON:
    return {"name": name, "typed_config": typed(f"extensions.filters.http.{kind}")}
