"""Tracing config: the mesh's Telemetry resource and the OTLP endpoint become Envoy's
OpenTelemetry tracer on every sidecar listener and on the gateway, and Envoy accepts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts import descriptors
from gateway import auth, render
from gateway.settings import Settings as GatewaySettings
from mesh.check.model import Resource, compose
from mesh.local.ca import Identity
from mesh.local.sidecar import bootstrap, static_config
from mesh.local.sidecar import render as render_sidecar
from mesh.local.telemetry import trace_policy
from mesh.local.workloads import workloads
from runner.envoy_tracing import COLLECTOR_CLUSTER, Tracing, TracingError
from tests.gateway.conftest import gateway_settings
from tests.mesh.local.test_sidecar import SETTINGS, XDS, base, identities, plan_for, validate

__all__ = ["base", "identities"]  # fixtures, used by name
ENDPOINT = "http://127.0.0.1:4317"


def managers(listener: dict[str, Any]) -> list[dict[str, Any]]:
    return [f["typed_config"] for chain in listener["filter_chains"] for f in chain["filters"]]


def telemetry(tmp_path: Path, *specs: tuple[str, str]) -> Path:
    """An overlay of Telemetry resources in `default`, each (name, spec lines)."""
    path = tmp_path / "telemetry.yaml"
    path.write_text(
        "---\n".join(
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"
            f"metadata: {{name: {name}, namespace: default}}\nspec:\n{spec}"
            for name, spec in specs
        )
    )
    return path


@pytest.fixture(scope="module")
def shop() -> descriptors.Contracts:
    return descriptors.load(GatewaySettings().descriptor_set)


def test_every_sidecar_listener_traces_to_the_collector(
    base: list[Resource], identities: dict[str, Identity]
) -> None:
    mesh = compose(base, SETTINGS.mesh_dir, None)
    plan = plan_for(mesh)
    for name, workload in workloads(mesh).items():
        rendered = render_sidecar(mesh, workload, plan, identities[name], XDS, ENDPOINT)
        [collector] = [c for c in rendered.clusters if c["name"] == COLLECTOR_CLUSTER]
        address = collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert address["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 4317}
        for listener in rendered.listeners:
            direction = "INBOUND" if listener["name"] == "inbound" else "OUTBOUND"
            assert listener["traffic_direction"] == direction
            for manager in managers(listener):
                tracing = manager["tracing"]
                provider = tracing["provider"]["typed_config"]
                assert provider["service_name"] == f"{workload.app}.default"
                assert provider["grpc_service"]["envoy_grpc"]["cluster_name"] == COLLECTOR_CLUSTER
                assert tracing["random_sampling"] == {"value": 100.0}  # the mesh-wide Telemetry
                assert tracing["operation"] == "%REQ(:PATH)%"


def test_no_endpoint_no_tracer(base: list[Resource], identities: dict[str, Identity]) -> None:
    mesh = compose(base, SETTINGS.mesh_dir, None)
    plan = plan_for(mesh)
    rendered = render_sidecar(
        mesh, workloads(mesh)["orders-v1"], plan, identities["orders-v1"], XDS
    )
    assert COLLECTOR_CLUSTER not in {c["name"] for c in rendered.clusters}
    assert not any("tracing" in m for listener in rendered.listeners for m in managers(listener))


def test_telemetry_resources_override_from_root_to_namespace_to_workload(
    base: list[Resource], tmp_path: Path
) -> None:
    overlay = telemetry(
        tmp_path,
        ("ns", "  tracing: [{randomSamplingPercentage: 10}]\n"),
        (
            "quiet",
            "  selector: {matchLabels: {app: payments}}\n"
            "  tracing: [{disableSpanReporting: true}]\n",
        ),
    )
    mesh = compose(base, SETTINGS.mesh_dir, overlay)
    every = workloads(mesh)
    orders = trace_policy(mesh, every["orders-v1"])
    assert (orders.provider, orders.sampling) == ("otel", 10.0)  # provider from istio-system
    assert trace_policy(mesh, every["payments"]).tracing(ENDPOINT) is None
    assert orders.tracing(ENDPOINT) == Tracing("127.0.0.1", 4317, 10.0)


def test_an_unsupported_telemetry_field_is_refused(base: list[Resource], tmp_path: Path) -> None:
    custom = telemetry(
        tmp_path, ("tags", "  tracing: [{customTags: {a: {literal: {value: b}}}}]\n")
    )
    mesh = compose(base, SETTINGS.mesh_dir, custom)
    with pytest.raises(Exception, match=r"spec.tracing\[0\].customTags: not supported"):
        trace_policy(mesh, workloads(mesh)["users"])


@pytest.mark.parametrize("endpoint", ["grpc://x:1", "http://nohost", "https://c:4317"])
def test_an_endpoint_envoy_cannot_use_is_named(endpoint: str) -> None:
    with pytest.raises(TracingError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        Tracing.from_endpoint(endpoint)


def test_envoy_accepts_a_traced_sidecar(
    base: list[Resource], identities: dict[str, Identity], tmp_path: Path
) -> None:
    mesh = compose(base, SETTINGS.mesh_dir, None)
    workload = workloads(mesh)["orders-v1"]
    rendered = render_sidecar(
        mesh, workload, plan_for(mesh), identities["orders-v1"], XDS, ENDPOINT
    )
    config = static_config(bootstrap(workload, XDS), rendered)
    result = validate(config, tmp_path / "sidecar.json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gateway_starts_traces_and_names_spans_by_route(
    tmp_path: Path, shop: descriptors.Contracts
) -> None:
    settings = gateway_settings(
        tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "TRACE_SAMPLING": "25"}
    )
    auth.ensure_dev_key(settings)
    config = render.bootstrap(settings, shop)
    [listener] = config["static_resources"]["listeners"]
    [manager] = managers(listener)
    assert manager["tracing"]["random_sampling"] == {"value": 25.0}
    assert manager["tracing"]["provider"]["typed_config"]["service_name"] == "gateway"
    assert COLLECTOR_CLUSTER in {c["name"] for c in config["static_resources"]["clusters"]}
    operations = {
        r["decorator"]["operation"]
        for r in manager["route_config"]["virtual_hosts"][0]["routes"]
        if "decorator" in r
    }
    assert {"POST /v1/orders", "GET /v1/orders/{order_id}"} <= operations
    result = validate(config, tmp_path / "gateway.json")
    assert result.returncode == 0, result.stdout + result.stderr
    untraced = render.bootstrap(gateway_settings(tmp_path), shop)
    assert "tracing" not in managers(untraced["static_resources"]["listeners"][0])[0]
