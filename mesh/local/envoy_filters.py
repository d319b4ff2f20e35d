"""Istio EnvoyFilter, as far as the local mesh honours it: HTTP filters patched into a
sidecar's inbound or outbound filter chain.
"""

from __future__ import annotations

from mesh.check.model import Mesh, as_dict, as_list
from mesh.local.fields import allow_only, error
from mesh.local.workloads import selects
from mesh.local.xds import JSON
from services.runtime.topology import Workload


def patch_http_filters(
    mesh: Mesh, workload: Workload, context: str, filters: list[JSON]
) -> list[JSON]:
    """Apply the EnvoyFilters that select `workload` and patch HTTP filters in `context`.

    Only HTTP_FILTER patches relative to a named filter (or first) are supported: enough for a
    callee-side fault, which is how Istio users make a service flaky on purpose.
    """
    filters = list(filters)
    for resource in mesh.of_kind("EnvoyFilter"):
        selector = as_dict(as_dict(resource.spec.get("workloadSelector")).get("labels"))
        if not selects(resource, workload, selector):
            continue
        allow_only(
            resource, resource.spec, "spec", {"workloadSelector", "configPatches", "priority"}
        )
        for i, patch in enumerate(map(as_dict, as_list(resource.spec.get("configPatches")))):
            where = f"spec.configPatches[{i}]"
            allow_only(resource, patch, where, {"applyTo", "match", "patch"})
            if patch.get("applyTo") != "HTTP_FILTER":
                raise error(resource, f"{where}.applyTo", "only HTTP_FILTER is supported locally")
            match = as_dict(patch.get("match"))
            allow_only(resource, match, f"{where}.match", {"context", "listener"})
            if match.get("context", "ANY") not in (context, "ANY"):
                continue
            listener = as_dict(match.get("listener"))
            allow_only(resource, listener, f"{where}.match.listener", {"filterChain"})
            chain = as_dict(listener.get("filterChain"))
            allow_only(resource, chain, f"{where}.match.listener.filterChain", {"filter"})
            network = as_dict(chain.get("filter"))
            allow_only(
                resource,
                network,
                f"{where}.match.listener.filterChain.filter",
                {"name", "subFilter"},
            )
            if network.get("name", "envoy.filters.network.http_connection_manager") != (
                "envoy.filters.network.http_connection_manager"
            ):
                raise error(
                    resource,
                    f"{where}.match.listener.filterChain.filter.name",
                    "only the HTTP connection manager",
                )
            anchor = as_dict(network.get("subFilter")).get("name")
            operation = as_dict(patch.get("patch"))
            allow_only(resource, operation, f"{where}.patch", {"operation", "value"})
            value = as_dict(operation.get("value"))
            if not value.get("name"):
                raise error(resource, f"{where}.patch.value.name", "an HTTP filter needs a name")
            names = [f["name"] for f in filters]
            kind = operation.get("operation")
            if kind == "INSERT_FIRST":
                filters.insert(0, value)
            elif kind in ("INSERT_BEFORE", "INSERT_AFTER"):
                if anchor not in names:
                    raise error(
                        resource,
                        f"{where}.match.listener.filterChain.filter.subFilter.name",
                        f"{anchor!r} is not one of {names}",
                    )
                filters.insert(names.index(anchor) + (kind == "INSERT_AFTER"), value)
            else:
                raise error(
                    resource,
                    f"{where}.patch.operation",
                    "use INSERT_BEFORE, INSERT_AFTER or INSERT_FIRST",
                )
    return filters
