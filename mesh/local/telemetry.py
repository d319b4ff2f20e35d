"""Istio `Telemetry` tracing, as far as the local mesh honours it: which sidecars trace, at what
sampling percentage, to the one OTLP collector of this machine.

As in Istio, the root namespace's resource applies to every workload, a namespace's resource
without a selector overrides it, and one that selects the workload overrides both, field by field.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.check.model import Mesh, Resource, as_dict, as_list
from mesh.check.semantic import ISTIO_ROOT_NAMESPACE
from mesh.local.fields import allow_only, error
from mesh.local.workloads import selects
from runner.envoy_tracing import Tracing
from services.runtime.topology import Workload

# Istio's sampling when nothing sets randomSamplingPercentage (meshConfig's default).
ISTIO_DEFAULT_SAMPLING = 1.0


@dataclass(frozen=True)
class TracePolicy:
    """What the Telemetry resources say about one workload's spans."""

    provider: str = ""
    sampling: float = ISTIO_DEFAULT_SAMPLING
    reporting: bool = True

    def tracing(self, otlp_endpoint: str) -> Tracing | None:
        """The sidecar's tracer: spans go to `otlp_endpoint` (the local stand-in for the
        provider's collector) when a provider is named and reporting is on."""
        if not self.provider or not self.reporting:
            return None
        return Tracing.from_endpoint(otlp_endpoint, self.sampling)


def trace_policy(mesh: Mesh, workload: Workload) -> TracePolicy:
    """The Telemetry tracing that applies to `workload`, most specific last."""
    policy = TracePolicy()
    for resource in sorted(_applicable(mesh, workload), key=lambda r: _specificity(r, workload)):
        policy = _merge(policy, resource)
    return policy


def _applicable(mesh: Mesh, workload: Workload) -> list[Resource]:
    found = []
    for resource in mesh.of_kind("Telemetry"):
        allow_only(resource, resource.spec, "spec", {"selector", "tracing"})
        labels = as_dict(as_dict(resource.spec.get("selector")).get("matchLabels"))
        if resource.namespace == ISTIO_ROOT_NAMESPACE and labels:
            continue  # Istio ignores selectors in the root namespace
        if selects(resource, workload, labels):
            found.append(resource)
    return found


def _specificity(resource: Resource, workload: Workload) -> int:
    if resource.namespace != workload.namespace:
        return 0
    return 2 if "selector" in resource.spec else 1


def _merge(policy: TracePolicy, resource: Resource) -> TracePolicy:
    rules = [as_dict(t) for t in as_list(resource.spec.get("tracing"))]
    if len(rules) > 1:
        raise error(resource, "spec.tracing", "the local mesh takes one tracing rule")
    if not rules:
        return policy
    rule = rules[0]
    allow_only(
        resource,
        rule,
        "spec.tracing[0]",
        {"providers", "randomSamplingPercentage", "disableSpanReporting"},
    )
    provider = policy.provider
    if "providers" in rule:
        names = [str(as_dict(p).get("name", "")) for p in as_list(rule["providers"])]
        if len(names) != 1 or not names[0]:
            raise error(resource, "spec.tracing[0].providers", "name exactly one provider")
        provider = names[0]
    sampling = float(rule.get("randomSamplingPercentage", policy.sampling))
    if not 0 <= sampling <= 100:
        raise error(resource, "spec.tracing[0].randomSamplingPercentage", "must be 0-100")
    reporting = not rule.get("disableSpanReporting", not policy.reporting)
    return TracePolicy(provider, sampling, bool(reporting))
