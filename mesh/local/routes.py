"""Istio traffic routing as Envoy routes: VirtualService and GRPCRoute matches, weights,
header rewrites, faults, retries and timeouts, with Istio's defaults where a resource is silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import grpc

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
from mesh.local.fields import allow_only, backend_service, duration, error, service_port
from mesh.local.xds import JSON, typed

# Istio's defaults where a resource is silent (pilot/pkg/networking/core).
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_ATTEMPTS = 2
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
GRPC_CODES = {code.name: code.value[0] for code in grpc.StatusCode}


@dataclass(frozen=True, order=True)
class Target:
    """An upstream cluster: a Service (and subset) on one of its ports."""

    host: str
    port: int
    subset: str = ""

    @property
    def name(self) -> str:
        return f"outbound|{self.port}|{self.subset}|{self.host}"

    def sni(self, namespace: str) -> str:
        """Istio's SNI for a cluster: a name per port, subset and host."""
        fqdn = f"{self.host}.{namespace}.svc.cluster.local"
        return f"outbound_.{self.port}_.{self.subset}_.{fqdn}"


def outbound_routes_name(host: str) -> str:
    return f"outbound_{host}"


def outbound_routes(mesh: Mesh, host: str) -> tuple[JSON, list[Target]]:
    """The routes for calls to `host`: from its VirtualService or GRPCRoute, or a default."""
    service = service_for_host(mesh, host)
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
            as_dict(p).get("kind") == "Service" and as_dict(p).get("name") == service.name
            for p in as_list(r.spec.get("parentRefs"))
        )
    ]
    if len(virtual) + len(grpc) > 1:
        names = ", ".join(f"{r.kind}/{r.name} ({r.source})" for r in [*virtual, *grpc])
        raise error((virtual + grpc)[-1], "spec", f"more than one route for host {host}: {names}")
    if virtual:
        routes, targets = _virtual_service_routes(mesh, virtual[0])
    elif grpc:
        routes, targets = _grpc_route_routes(mesh, grpc[0])
    else:
        target = Target(service.name, service_port(service))
        # No route resource: Istio's defaults (no timeout, its default retries).
        action = {"cluster": target.name, "timeout": "0s", **_retry_policy(service, "", None)}
        routes, targets = [_route("default", {"prefix": "/"}, action, None)], [target]
    name = outbound_routes_name(host)
    config = {"name": name, "virtual_hosts": [{"name": host, "domains": ["*"], "routes": routes}]}
    return config, sorted(set(targets))


def _virtual_service_routes(mesh: Mesh, vs: Resource) -> tuple[list[JSON], list[Target]]:
    allow_only(vs, vs.spec, "spec", {"hosts", "gateways", "http", "exportTo"})
    routes, targets = [], []
    for i, http in enumerate(map(as_dict, as_list(vs.spec.get("http")))):
        where = f"spec.http[{i}]"
        allow_only(
            vs, http, where, {"name", "match", "route", "timeout", "retries", "fault", "headers"}
        )
        destinations = []
        for j, entry in enumerate(map(as_dict, as_list(http.get("route")))):
            allow_only(vs, entry, f"{where}.route[{j}]", {"destination", "weight", "headers"})
            dest = as_dict(entry.get("destination"))
            allow_only(vs, dest, f"{where}.route[{j}].destination", {"host", "subset", "port"})
            service = backend_service(
                mesh, vs, f"{where}.route[{j}].destination.host", str(dest.get("host", ""))
            )
            port = int(as_dict(dest.get("port")).get("number") or service_port(service))
            target = Target(service.name, port, str(dest.get("subset", "")))
            targets.append(target)
            destinations.append(
                (target, int(entry.get("weight", 100)), _headers(vs, entry, f"{where}.route[{j}]"))
            )
        if not destinations:
            raise error(
                vs, f"{where}.route", "no destination (redirects are not supported locally)"
            )
        action = _destination(destinations)
        route_headers = _headers(vs, http, where)
        if len(destinations) == 1:
            route_headers.update(destinations[0][2])
        action["timeout"] = duration(vs, f"{where}.timeout", http.get("timeout", "0s"))
        action.update(
            _retry_policy(vs, where, as_dict(http.get("retries")) if "retries" in http else None)
        )
        fault = _fault(vs, where, as_dict(http.get("fault"))) if "fault" in http else None
        matches = list(map(as_dict, as_list(http.get("match")))) or [{}]
        for k, match in enumerate(matches):
            name = str(http.get("name") or f"{vs.name}-{i}") + (f"-{k}" if len(matches) > 1 else "")
            routes.append(
                _route(name, _match(vs, f"{where}.match[{k}]", match), action, fault, route_headers)
            )
    return routes, targets


def _grpc_route_routes(mesh: Mesh, route: Resource) -> tuple[list[JSON], list[Target]]:
    """Gateway API GRPCRoute (GAMMA): backendRefs name Services; weights are proportions."""
    routes, targets = [], []
    for i, rule in enumerate(map(as_dict, as_list(route.spec.get("rules")))):
        where = f"spec.rules[{i}]"
        allow_only(route, rule, where, {"matches", "backendRefs", "name"})
        backends: list[tuple[Target, int, JSON]] = []
        for j, ref in enumerate(map(as_dict, as_list(rule.get("backendRefs")))):
            allow_only(
                route,
                ref,
                f"{where}.backendRefs[{j}]",
                {"name", "port", "weight", "kind", "group", "namespace"},
            )
            service = backend_service(
                mesh, route, f"{where}.backendRefs[{j}].name", str(ref.get("name", ""))
            )
            target = Target(service.name, int(ref.get("port") or service_port(service)))
            targets.append(target)
            backends.append((target, int(ref.get("weight", 1)), {}))
        action = _destination(backends)
        action.update(timeout="0s", **_retry_policy(route, where, None))
        matches = list(map(as_dict, as_list(rule.get("matches")))) or [{}]
        for k, match in enumerate(matches):
            allow_only(route, match, f"{where}.matches[{k}]", {"method", "headers"})
            method = as_dict(match.get("method"))
            service_name, method_name = method.get("service"), method.get("method")
            path: JSON = {"prefix": "/"}
            if service_name and method_name:
                path = {"path": f"/{service_name}/{method_name}"}
            elif service_name:
                path = {"prefix": f"/{service_name}/"}
            headers = [
                {"name": str(h.get("name")), "string_match": {"exact": str(h.get("value"))}}
                for h in map(as_dict, as_list(match.get("headers")))
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


def _destination(weighted: list[tuple[Target, int, JSON]]) -> JSON:
    """One cluster, or a weighted split (with each destination's header rewrites)."""
    if len(weighted) == 1:
        return {"cluster": weighted[0][0].name}
    return {
        "weighted_clusters": {
            "clusters": [
                {"name": target.name, "weight": weight, **headers}
                for target, weight, headers in weighted
                if weight > 0
            ]
        }
    }


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
    allow_only(vs, match, where, {"name", "uri", "headers"})
    result: JSON = {"prefix": "/"}
    uri = as_dict(match.get("uri"))
    if uri:
        result = _string_predicate(
            vs, f"{where}.uri", uri, {"exact": "path", "prefix": "prefix", "regex": "safe_regex"}
        )
    headers = []
    for name, condition in as_dict(match.get("headers")).items():
        matcher = _string_predicate(
            vs,
            f"{where}.headers.{name}",
            as_dict(condition),
            {"exact": "exact", "prefix": "prefix", "regex": "safe_regex"},
        )
        headers.append({"name": str(name), "string_match": matcher})
    if headers:
        result["headers"] = headers
    return result


def _string_predicate(
    resource: Resource, where: str, condition: Doc, keys: Mapping[str, str]
) -> JSON:
    allow_only(resource, condition, where, set(keys))
    if len(condition) != 1:
        raise error(resource, where, f"needs exactly one of {sorted(keys)}")
    key, value = next(iter(condition.items()))
    if key == "regex":
        return {keys[key]: {"regex": str(value)}}
    return {keys[key]: str(value)}


def _headers(resource: Resource, node: Doc, where: str) -> JSON:
    """Istio `headers.{request,response}.{set,add,remove}` as Envoy header mutations."""
    headers = as_dict(node.get("headers"))
    allow_only(resource, headers, f"{where}.headers", {"request", "response"})
    result: JSON = {}
    for direction in ("request", "response"):
        ops = as_dict(headers.get(direction))
        allow_only(resource, ops, f"{where}.headers.{direction}", {"set", "add", "remove"})
        to_add = [
            {
                "header": {"key": str(k), "value": str(v)},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
            for k, v in as_dict(ops.get("set")).items()
        ] + [
            {"header": {"key": str(k), "value": str(v)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
            for k, v in as_dict(ops.get("add")).items()
        ]
        if to_add:
            result[f"{direction}_headers_to_add"] = to_add
        if ops.get("remove"):
            result[f"{direction}_headers_to_remove"] = [str(h) for h in as_list(ops["remove"])]
    return result


def _retry_policy(resource: Resource, where: str, retries: Doc | None) -> JSON:
    """Istio's retry semantics: a default policy when silent, `attempts: 0` turns retries off."""
    if retries is None:
        retries = {}
    allow_only(
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
            raise error(
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
                "typed_config": typed(
                    "extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                ),
            }
        ],
        "host_selection_retry_max_attempts": 5,
    }
    if codes:
        policy["retriable_status_codes"] = codes
    if "perTryTimeout" in retries:
        policy["per_try_timeout"] = duration(
            resource, f"{where}.retries.perTryTimeout", retries["perTryTimeout"]
        )
    return {"retry_policy": policy}


def _fault(resource: Resource, where: str, fault: Doc) -> JSON:
    allow_only(resource, fault, f"{where}.fault", {"delay", "abort"})
    config: JSON = {}
    delay = as_dict(fault.get("delay"))
    if delay:
        allow_only(resource, delay, f"{where}.fault.delay", {"fixedDelay", "percentage"})
        config["delay"] = {
            "fixed_delay": duration(
                resource, f"{where}.fault.delay.fixedDelay", delay.get("fixedDelay")
            ),
            "percentage": _percentage(delay),
        }
    abort = as_dict(fault.get("abort"))
    if abort:
        allow_only(
            resource, abort, f"{where}.fault.abort", {"httpStatus", "grpcStatus", "percentage"}
        )
        if "grpcStatus" in abort:
            code = GRPC_CODES.get(str(abort["grpcStatus"]))
            if code is None:
                raise error(
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
            raise error(resource, f"{where}.fault.abort", "needs grpcStatus or httpStatus")
    return typed("extensions.filters.http.fault.v3.HTTPFault", **config)


def _percentage(node: Doc) -> JSON:
    value = float(as_dict(node.get("percentage")).get("value", 100))
    return {"numerator": round(value * 10_000), "denominator": "MILLION"}


def _routes_host(vs: Resource, service: Resource) -> bool:
    gateways = as_list(vs.spec.get("gateways"))
    if gateways and "mesh" not in gateways:
        return False
    return any(str(h).split(".")[0] == service.name for h in as_list(vs.spec.get("hosts")))
