"""Canary routing through the gateway and the sidecars: 90/10, a live switch to 50/50, a header.

Which version served an order is read from each version's inbound sidecar: its count of
completed PlaceOrder calls (the local twin of Istio's istio_requests_total by
destination_version), so that other traffic to orders, such as its event stream, does not count.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mesh.local.supervisor import ApplyError, LocalMesh
from tests.mesh.local.conftest import SCENARIOS, Shop

pytestmark = pytest.mark.system
ORDERS = 2000
PLACE_ORDER = "/shop.orders.v1.OrderService/PlaceOrder"
CONCURRENCY = 16


def v2_share(mesh: LocalMesh, shop: Shop, count: int, **headers: str) -> float:
    """Place `count` orders through the gateway; the share that orders v2 served."""
    before = {name: mesh.served(name, PLACE_ORDER) for name in ("orders-v1", "orders-v2")}
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        statuses = list(pool.map(lambda _: shop.place_order(**headers).status_code, range(count)))
    assert statuses == [200] * count
    served = {name: mesh.served(name, PLACE_ORDER) - before[name] for name in before}
    assert sum(served.values()) == count, served
    return served["orders-v2"] / count


def run_cli(mesh: LocalMesh, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mesh.local", *args, "--workdir", str(mesh.workdir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_canary_split_shifts_live_and_beta_header_goes_to_v2(mesh: LocalMesh, shop: Shop) -> None:
    mesh.apply(SCENARIOS / "orders-canary-90-10.yaml")
    assert 0.075 <= v2_share(mesh, shop, ORDERS) <= 0.125

    # `make mesh-apply` from another process: no restart, the same sidecar processes.
    pids = {name: sidecar.process.pid for name, sidecar in mesh.sidecars.items() if sidecar.process}
    run_cli(mesh, "apply", str(SCENARIOS / "orders-canary-50-50.yaml"))
    status = run_cli(mesh, "status")
    assert "orders v1 50%, orders v2 50%" in status
    assert 0.465 <= v2_share(mesh, shop, ORDERS) <= 0.535
    assert {n: s.process.pid for n, s in mesh.sidecars.items() if s.process} == pids

    mesh.apply(SCENARIOS / "orders-header-beta-to-v2.yaml")
    assert v2_share(mesh, shop, 200, **{"x-user-tier": "beta"}) == 1.0
    assert v2_share(mesh, shop, 200) == 0.0


def test_a_config_envoy_rejects_is_reported_and_the_old_one_keeps_serving(
    mesh: LocalMesh, shop: Shop, tmp_path: Path
) -> None:
    # Valid Istio YAML (EnvoyFilter values are opaque to Istio's schema), invalid for Envoy.
    scenario = tmp_path / "users-broken-filter.yaml"
    scenario.write_text(BROKEN_FILTER)
    with pytest.raises(ApplyError, match=r"users: listener_manager\.lds\.update_rejected"):
        mesh.apply(scenario)
    assert shop.place_order().status_code == 200
    mesh.apply(None)


BROKEN_FILTER = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: users-broken}
spec:
  workloadSelector: {labels: {app: users}}
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_INBOUND
        listener: {filterChain: {filter: {subFilter: {name: envoy.filters.http.router}}}}
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.fault
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
            abort: {grpc_status: 14, no_such_field: true}
"""
