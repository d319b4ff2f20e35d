"""Sidecar rendering: the Istio YAML becomes the Envoy config it means, and Envoy accepts it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.check import Mesh, MeshError, Settings, load
from mesh.check.model import Resource, compose
from mesh.check.model import render as render_kustomize
from mesh.local.ca import Identity, LocalCA
from mesh.local.sidecar import Rendered, bootstrap, render, static_config
from mesh.local.workloads import Ports, workloads
from runner.envoy import envoy_binary
from services.runtime.topology import Workload

SETTINGS = Settings()
SCENARIOS = SETTINGS.mesh_dir / "scenarios"
XDS = Path("/nonexistent/xds")


@pytest.fixture(scope="module")
def base() -> list[Resource]:
    return list(render_kustomize(SETTINGS.mesh_dir))


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Identity]:
    root = tmp_path_factory.mktemp("ca")
    ca = LocalCA(root / "ca")
    mesh = load(SETTINGS.mesh_dir)
    return {n: ca.issue(w.account, root / n) for n, w in workloads(mesh).items()}


def plan_for(mesh: Mesh) -> dict[str, Ports]:
    """Fixed, distinct ports: rendering is pure, nothing binds them."""
    plan = {}
    for i, (name, w) in enumerate(sorted(workloads(mesh).items())):
        peers = sorted(set(w.peers.values()))
        outbound = {host: 30000 + 10 * i + j for j, host in enumerate(peers)}
        plan[name] = Ports(app=20000 + i, inbound=25000 + i if w.grpc else 0, outbound=outbound)
    return plan


def sidecars(
    base: list[Resource], scenario: Path | None, identities: dict[str, Identity]
) -> dict[str, tuple[Workload, Rendered]]:
    mesh = compose(base, SETTINGS.mesh_dir, scenario)
    plan = plan_for(mesh)
    return {
        name: (w, render(mesh, w, plan, identities[name], XDS))
        for name, w in workloads(mesh).items()
    }


def routes(rendered: Rendered, name: str) -> list[dict[str, Any]]:
    config = next(r for r in rendered.routes if r["name"] == name)
    return list(config["virtual_hosts"][0]["routes"])


def cluster(rendered: Rendered, name: str) -> dict[str, Any]:
    return next(c for c in rendered.clusters if c["name"] == name)


def validate(config: dict[str, Any], path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(json.dumps(config))
    return subprocess.run(
        [
            envoy_binary(),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--disable-hot-restart",
            "-l",
            "error",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def every_overlay() -> Iterator[Path | None]:
    yield None
    yield from sorted(SCENARIOS.glob("*.yaml"))


@pytest.mark.parametrize("scenario", list(every_overlay()), ids=lambda p: p.stem if p else "base")
def test_envoy_accepts_every_sidecar_of_every_scenario(
    base: list[Resource], identities: dict[str, Identity], scenario: Path | None, tmp_path: Path
) -> None:
    for name, (workload, rendered) in sidecars(base, scenario, identities).items():
        result = validate(
            static_config(bootstrap(workload, XDS), rendered), tmp_path / f"{name}.json"
        )
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_envoy_validation_catches_a_broken_config(
    base: list[Resource], identities: dict[str, Identity], tmp_path: Path
) -> None:
    workload, rendered = sidecars(base, None, identities)["orders-v1"]
    config = static_config(bootstrap(workload, XDS), rendered)
    config["static_resources"]["clusters"][0]["lb_policy"] = "NO_SUCH_POLICY"
    assert validate(config, tmp_path / "broken.json").returncode != 0


def test_base_mesh_routes_every_call_to_v1_with_istio_default_retries(
    base: list[Resource], identities: dict[str, Identity]
) -> None:
    _, gateway = sidecars(base, None, identities)["gateway"]
    [route] = routes(gateway, "outbound_orders")
    assert route["route"]["cluster"] == "outbound|50054|v1|orders"
    assert route["route"]["timeout"] == "0s"  # streams (WatchOrder) are not cut off
    retry = route["route"]["retry_policy"]
    assert retry["num_retries"] == 2 and "unavailable" in retry["retry_on"].split(",")
    assert {r["name"] for r in gateway.routes} == {
        f"outbound_{h}" for h in ("catalog", "notifications", "orders", "payments", "users")
    }
    assert not any(listener["name"] == "inbound" for listener in gateway.listeners)


def test_canary_weights_and_header_route(
    base: list[Resource], identities: dict[str, Identity]
) -> None:
    _, gateway = sidecars(base, SCENARIOS / "orders-canary-90-10.yaml", identities)["gateway"]
    [route] = routes(gateway, "outbound_orders")
    weighted = route["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in weighted] == [
        ("outbound|50054|v1|orders", 90),
        ("outbound|50054|v2|orders", 10),
    ]

    _, gateway = sidecars(base, SCENARIOS / "orders-header-beta-to-v2.yaml", identities)["gateway"]
    beta, default = routes(gateway, "outbound_orders")
    assert beta["match"]["headers"] == [{"name": "x-user-tier", "string_match": {"exact": "beta"}}]
    assert beta["route"]["cluster"] == "outbound|50054|v2|orders"
    assert "headers" not in default["match"]
    assert default["route"]["cluster"] == "outbound|50054|v1|orders"

    _, gateway = sidecars(base, SCENARIOS / "orders-canary-grpcroute.yaml", identities)["gateway"]
    [route] = routes(gateway, "outbound_orders")
    weighted = route["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in weighted] == [
        ("outbound|50054||orders-v1", 90),
        ("outbound|50054||orders-v2", 10),
    ]


def test_subset_clusters_reach_only_their_version_over_mtls(
    base: list[Resource], identities: dict[str, Identity]
) -> None:
    mesh = compose(base, SETTINGS.mesh_dir, SCENARIOS / "orders-canary-90-10.yaml")
    plan = plan_for(mesh)
    _, gateway = sidecars(base, SCENARIOS / "orders-canary-90-10.yaml", identities)["gateway"]
    v2 = cluster(gateway, "outbound|50054|v2|orders")
    endpoints = v2["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == [
        plan["orders-v2"].inbound
    ]
    tls = v2["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["tls_certificates"][0]["certificate_chain"]["filename"] == str(
        identities["gateway"].cert
    )
    assert tls["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/default/sa/orders"}}
    ]
    assert v2["outlier_detection"]["max_ejection_percent"] == 50
    assert v2["outlier_detection"]["consecutive_5xx"] == 5
    assert v2["common_lb_config"]["healthy_panic_threshold"] == {"value": 0.0}
    assert v2["circuit_breakers"]["thresholds"][0]["max_requests"] == 1000
    http = v2["typed_extension_protocol_options"]
    assert "http2_protocol_options" in json.dumps(http)


def test_faults_and_retries(base: list[Resource], identities: dict[str, Identity]) -> None:
    _, orders = sidecars(base, SCENARIOS / "payments-delay.yaml", identities)["orders-v1"]
    [route] = routes(orders, "outbound_payments")
    fault = route["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["delay"] == {
        "fixed_delay": "2s",
        "percentage": {"numerator": 1_000_000, "denominator": "MILLION"},
    }

    _, orders = sidecars(base, SCENARIOS / "payments-abort.yaml", identities)["orders-v1"]
    [route] = routes(orders, "outbound_payments")
    assert route["typed_per_filter_config"]["envoy.filters.http.fault"]["abort"]["grpc_status"] == 8

    _, orders = sidecars(base, SCENARIOS / "catalog-retries.yaml", identities)["orders-v1"]
    [route] = routes(orders, "outbound_catalog")
    retry = route["route"]["retry_policy"]
    assert (retry["retry_on"], retry["num_retries"], retry["per_try_timeout"]) == (
        "unavailable",
        3,
        "0.5s",
    )
    assert route["route"]["timeout"] == "2s"


def test_envoy_filter_puts_the_flaky_fault_on_the_callee_inbound(
    base: list[Resource], identities: dict[str, Identity]
) -> None:
    rendered = sidecars(base, SCENARIOS / "catalog-flaky-with-retries.yaml", identities)

    def inbound_filters(name: str) -> list[str]:
        listener = next(x for x in rendered[name][1].listeners if x["name"] == "inbound")
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        return [f["name"] for f in manager["http_filters"]]

    assert inbound_filters("catalog")[-2:] == [
        "envoy.filters.http.fault",
        "envoy.filters.http.router",
    ]
    assert "envoy.filters.http.fault" not in inbound_filters("users")


def test_authorization_policies_become_per_route_rbac(
    base: list[Resource], identities: dict[str, Identity]
) -> None:
    _, payments = sidecars(base, None, identities)["payments"]
    [route] = routes(payments, "inbound")
    allow = route["typed_per_filter_config"]["envoy.filters.http.rbac.allow"]["rbac"]["rules"]
    assert allow["action"] == "ALLOW"
    # One policy per rule of payments' ALLOW policies (its API, its event stream); deny-all
    # adds none: nothing else is allowed.
    orders, gateway, notifications = allow["policies"].values()

    def only_principal(policy: dict[str, Any]) -> str:
        [source] = policy["principals"]
        [any_of] = source["and_ids"]["ids"]
        [principal] = any_of["or_ids"]["ids"]
        return str(principal["authenticated"]["principal_name"]["exact"])

    def paths(policy: dict[str, Any]) -> set[str]:
        [operation] = policy["permissions"]
        [any_of] = operation["and_rules"]["rules"]
        return {rule["url_path"]["path"]["exact"] for rule in any_of["or_rules"]["rules"]}

    service = "/shop.payments.v1.PaymentService"
    assert only_principal(orders) == "spiffe://cluster.local/ns/default/sa/orders"
    assert paths(orders) == {
        f"{service}/{m}" for m in ("ChargePayment", "RefundPayment", "GetPayment")
    }
    assert only_principal(gateway) == "spiffe://cluster.local/ns/default/sa/gateway"
    assert paths(gateway) == {f"{service}/GetPayment"}
    events = "/shop.events.v1.EventStreamService"
    assert only_principal(notifications) == "spiffe://cluster.local/ns/default/sa/notifications"
    assert paths(notifications) == {f"{events}/Subscribe", f"{events}/Ack"}
    deny = route["typed_per_filter_config"]["envoy.filters.http.rbac.deny"]
    assert "rbac" not in deny  # no DENY policy: that filter has no say


def test_unsupported_istio_fields_fail_with_file_resource_and_field(
    base: list[Resource], identities: dict[str, Identity], tmp_path: Path
) -> None:
    scenario = tmp_path / "mirror.yaml"
    scenario.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: payments}\n"
        "spec:\n  hosts: [payments]\n  http:\n"
        "    - route: [{destination: {host: payments}}]\n"
        "      mirror: {host: payments}\n"
    )
    with pytest.raises(MeshError) as caught:
        sidecars(base, scenario, identities)
    assert "mirror.yaml: VirtualService/payments: spec.http[0].mirror: not supported" in str(
        caught.value
    )
