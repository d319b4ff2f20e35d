"""Istio AuthorizationPolicy as Envoy RBAC, carried per route on the inbound route
configuration so that a policy change applies without replacing the listener.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mesh.check.model import Doc, Mesh, Resource, as_dict, as_list
from mesh.check.semantic import TRUST_DOMAIN
from mesh.local.clusters import inbound_cluster_name
from mesh.local.fields import allow_only, error
from mesh.local.workloads import Ports, selects
from mesh.local.xds import JSON, typed
from services.runtime.topology import Workload

INBOUND_ROUTES = "inbound"

Matcher = Callable[[str], JSON]


def inbound_routes(mesh: Mesh, workload: Workload, ports: Ports) -> JSON:
    """One route to the app, carrying the RBAC rules so that a policy change applies at once."""
    rules: dict[str, list[tuple[Resource, int, Doc]]] = {"ALLOW": [], "DENY": []}
    allow_policies = 0
    for policy in mesh.of_kind("AuthorizationPolicy"):
        selector = as_dict(as_dict(policy.spec.get("selector")).get("matchLabels"))
        if not selects(policy, workload, selector):
            continue
        allow_only(policy, policy.spec, "spec", {"selector", "action", "rules"})
        action = str(policy.spec.get("action", "ALLOW"))
        if action not in rules:
            raise error(policy, "spec.action", f"{action} is not supported locally (ALLOW, DENY)")
        allow_policies += action == "ALLOW"
        for i, rule in enumerate(map(as_dict, as_list(policy.spec.get("rules")))):
            rules[action].append((policy, i, rule))

    def per_route(action: str) -> JSON:
        if (action == "ALLOW" and not allow_policies) or (action == "DENY" and not rules["DENY"]):
            return typed("extensions.filters.http.rbac.v3.RBACPerRoute")  # no rules: no say
        policies = {f"{p.name}[{i}]": _rbac_policy(p, i, rule) for p, i, rule in rules[action]}
        return typed(
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
                        "route": {"cluster": inbound_cluster_name(ports.app), "timeout": "0s"},
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
    allow_only(policy, rule, where, {"from", "to"})
    sources = {"principals": _principal, "namespaces": _namespace}
    principals = _clauses(policy, rule.get("from"), f"{where}.from", "source", "id", sources)
    operations = {"paths": _path, "methods": _method}
    permissions = _clauses(policy, rule.get("to"), f"{where}.to", "operation", "rule", operations)
    return {
        "permissions": permissions or [{"any": True}],
        "principals": principals or [{"any": True}],
    }


def _clauses(
    policy: Resource,
    entries: Any,
    where: str,
    key: str,
    kind: str,
    matchers: Mapping[str, Matcher],
) -> list[JSON]:
    """A rule's `from` or `to` clauses. Each holds when all its `field` and `notField` pairs do,
    and a pair when any of its values matches; `kind` is Envoy's word: `id` or `rule`.
    """
    clauses = []
    for j, entry in enumerate(as_list(entries)):
        node = as_dict(as_dict(entry).get(key))
        terms, fields = [], []
        for name, matcher in matchers.items():
            for field, negate in ((name, False), (f"not{name[0].upper()}{name[1:]}", True)):
                fields.append(field)
                if field in node:
                    values = [matcher(str(v)) for v in as_list(node[field])]
                    any_of = {f"or_{kind}s": {f"{kind}s": values}}
                    terms.append({f"not_{kind}": any_of} if negate else any_of)
        allow_only(policy, node, f"{where}[{j}].{key}", fields)
        clauses.append({f"and_{kind}s": {f"{kind}s": terms}} if terms else {"any": True})
    return clauses


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
    return {"authenticated": {"principal_name": {"prefix": f"spiffe://{TRUST_DOMAIN}/ns/{value}/"}}}


def _path(value: str) -> JSON:
    return {"url_path": {"path": _string_match(value)}}


def _method(value: str) -> JSON:
    return {"header": {"name": ":method", "string_match": {"exact": value}}}


def _string_match(value: str) -> JSON:
    if value == "*":
        return {"safe_regex": {"regex": ".*"}}
    if value.endswith("*"):
        return {"prefix": value[:-1]}
    if value.startswith("*"):
        return {"suffix": value[1:]}
    return {"exact": value}
