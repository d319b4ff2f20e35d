"""The interop suite through the local mesh: each runner presents the gateway's SPIFFE identity
to the sidecars (mTLS, RBAC), against the Python catalog and against the Go canary (catalog-v2),
with orders' calls to catalog split between them by the canary scenario.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mesh.local.supervisor import LocalMesh
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tests.interop.conftest import CASES, HERE, RUNNERS, Run, expected_lines
from tests.mesh.local.conftest import SCENARIOS, gateway_env

pytestmark = [pytest.mark.system, pytest.mark.interop]
CANARY = SCENARIOS / "catalog-canary-50-50.yaml"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    workdir = tmp_path_factory.mktemp("interop-mesh")
    env = {"gateway": gateway_env(workdir)}
    with LocalMesh(workdir, scenario=CANARY, service_env=env) as running:
        yield running


def targets(mesh: LocalMesh, directory: Path, catalog: str = "catalog") -> dict[str, Any]:
    """Each workload's inbound sidecar port, its app port for probes, and who may call as whom."""
    workloads = {"users": "users", "catalog": catalog, "orders": "orders-v1"}
    identities: dict[str, dict[str, str]] = {"plaintext": {}}
    for account in ("gateway", "notifications"):
        issued = mesh.ca.issue(account, directory / account)
        identities[account] = {
            "ca": str(issued.ca),
            "cert": str(issued.cert),
            "key": str(issued.key),
        }
    identities["no-certificate"] = {"ca": identities["gateway"]["ca"]}
    return {
        "targets": {
            target: {
                "address": mesh.inbound(workload),
                "probe": mesh.address(workload),
                "serverName": f"{mesh.workloads[workload].app}.default.svc.cluster.local",
            }
            for target, workload in workloads.items()
        },
        "identities": identities,
        "identity": "gateway",
    }


@pytest.mark.parametrize("catalog", ["catalog", "catalog-v2"])
@pytest.mark.parametrize("runner", RUNNERS)
def test_every_case_passes_through_the_mesh(
    mesh: LocalMesh, run_suite: Run, tmp_path: Path, runner: str, catalog: str
) -> None:
    served = mesh.served(catalog)
    assert run_suite(runner, CASES, targets(mesh, tmp_path, catalog)) == expected_lines(CASES)
    assert mesh.served(catalog) > served  # the calls went through that version's sidecar


@pytest.mark.parametrize("runner", RUNNERS)
def test_callers_the_policy_does_not_name_are_refused(
    mesh: LocalMesh, run_suite: Run, tmp_path: Path, runner: str
) -> None:
    refusals = HERE / "refusals.json"
    assert run_suite(runner, refusals, targets(mesh, tmp_path)) == expected_lines(refusals)


def test_the_scenario_switches_the_go_canary(mesh: LocalMesh) -> None:
    """Under the canary both versions serve orders' and the gateway's calls; without it only v1."""

    def browse(times: int) -> tuple[int, int]:
        before = mesh.served("catalog"), mesh.served("catalog-v2")
        with grpc.insecure_channel(mesh.outbound("gateway", "catalog")) as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            for _ in range(times):
                stub.GetProduct(catalog_pb2.GetProductRequest(product_id="sku-mug"), timeout=5)
        return mesh.served("catalog") - before[0], mesh.served("catalog-v2") - before[1]

    v1, v2 = browse(60)
    assert v1 > 5 and v2 > 5, (v1, v2)
    mesh.apply(None)
    try:
        assert browse(30) == (30, 0)
    finally:
        mesh.apply(CANARY)
