"""Envoy clusters: the app behind the inbound listener, and each outbound Service (and subset)
with its DestinationRule's connection pool, load balancer, outlier detection and mTLS.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mesh.check.model import (
    Doc,
    Finding,
    Mesh,
    MeshError,
    Resource,
    as_dict,
    as_list,
    service_for_host,
)
from mesh.local import mtls
from mesh.local.ca import Identity
from mesh.local.fields import allow_only, duration, error
from mesh.local.routes import Target
from mesh.local.workloads import Ports
from mesh.local.xds import JSON, socket_address, typed
from services.runtime.topology import Workload

DEFAULT_CONNECT_TIMEOUT = "10s"  # Istio's, when a DestinationRule is silent
UNLIMITED = 4294967295
LB_POLICIES = {"ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST", "RANDOM": "RANDOM"}


# Streams per connection to the app: an app runs several worker processes on one port and the
# kernel gives each a connection, so the sidecar must open a few rather than multiplex all on one.
APP_STREAMS_PER_CONNECTION = 4


def inbound_cluster(port: int) -> JSON:
    """The app itself, as the inbound listener's upstream."""
    cluster = _cluster_shell(inbound_cluster_name(port), DEFAULT_CONNECT_TIMEOUT)
    options = cluster["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    http["explicit_http_config"]["http2_protocol_options"] = {
        "max_concurrent_streams": APP_STREAMS_PER_CONNECTION
    }
    cluster["load_assignment"] = _endpoints(cluster["name"], [port])
    return cluster


def outbound_cluster(
    mesh: Mesh,
    target: Target,
    every: Mapping[str, Workload],
    plan: Mapping[str, Ports],
    identity: Identity,
) -> JSON:
    service = service_for_host(mesh, target.host)
    assert service is not None  # routes resolved it
    rule = next(
        (
            dr
            for dr in mesh.of_kind("DestinationRule")
            if service_for_host(mesh, str(dr.spec.get("host", ""))) == service
        ),
        None,
    )
    selector = {str(k): str(v) for k, v in as_dict(service.spec.get("selector")).items()}
    policy: Doc = {}
    if rule is not None:
        allow_only(rule, rule.spec, "spec", {"host", "trafficPolicy", "subsets", "exportTo"})
        policy = as_dict(rule.spec.get("trafficPolicy"))
    if target.subset:
        subsets = (
            {str(as_dict(s).get("name")): as_dict(s) for s in as_list(rule.spec.get("subsets"))}
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
        selector.update({str(k): str(v) for k, v in as_dict(subset.get("labels")).items()})
        policy = {**policy, **as_dict(subset.get("trafficPolicy"))}
    members = [
        w
        for w in every.values()
        if all(w.labels.get(k) == v for k, v in selector.items())
        and w.namespace == service.namespace
    ]
    ports = [plan[w.name].inbound for w in members if w.name in plan and plan[w.name].inbound]
    where = rule if rule is not None else service
    allow_only(
        where,
        policy,
        "spec.trafficPolicy",
        {"tls", "connectionPool", "outlierDetection", "loadBalancer"},
    )
    pool = as_dict(policy.get("connectionPool"))
    allow_only(where, pool, "spec.trafficPolicy.connectionPool", {"tcp", "http"})
    tcp, http = as_dict(pool.get("tcp")), as_dict(pool.get("http"))
    allow_only(
        where, tcp, "spec.trafficPolicy.connectionPool.tcp", {"maxConnections", "connectTimeout"}
    )
    allow_only(
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
        duration(
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
    balancer = as_dict(policy.get("loadBalancer"))
    allow_only(where, balancer, "spec.trafficPolicy.loadBalancer", {"simple"})
    simple = str(balancer.get("simple", "LEAST_REQUEST"))
    if simple not in LB_POLICIES:
        raise error(
            where,
            "spec.trafficPolicy.loadBalancer.simple",
            f"{simple} is not one of {sorted(LB_POLICIES)}",
        )
    cluster["lb_policy"] = LB_POLICIES[simple]
    outlier = as_dict(policy.get("outlierDetection"))
    if outlier:
        cluster.update(_outlier_detection(where, outlier))
    tls = as_dict(policy.get("tls"))
    allow_only(where, tls, "spec.trafficPolicy.tls", {"mode", "sni"})
    mode = str(tls.get("mode", "ISTIO_MUTUAL"))  # auto mTLS: the mesh is STRICT
    if mode == "ISTIO_MUTUAL":
        cluster["transport_socket"] = mtls.upstream(
            identity,
            sorted({w.account for w in members}),
            service.namespace,
            str(tls.get("sni") or target.sni(service.namespace)),
        )
    elif mode != "DISABLE":
        raise error(
            where,
            "spec.trafficPolicy.tls.mode",
            f"{mode} is not supported locally (ISTIO_MUTUAL, DISABLE)",
        )
    return cluster


def _outlier_detection(where: Resource, outlier: Doc) -> JSON:
    path = "spec.trafficPolicy.outlierDetection"
    allow_only(
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
            detection[envoy_key] = duration(where, f"{path}.{key}", outlier[key])
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
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                "extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        },
    }


def _endpoints(name: str, ports: Iterable[int]) -> JSON:
    return {
        "cluster_name": name,
        "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": socket_address(p)}} for p in ports]}
        ],
    }


def inbound_cluster_name(port: int) -> str:
    return f"inbound|{port}||"
