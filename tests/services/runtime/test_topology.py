"""The topology read from mesh/base is the one table of ports and peers."""

from __future__ import annotations

import pytest

from services.runtime import topology
from services.runtime.settings import ServerSettings
from services.runtime.topology import TopologyError


def test_each_app_runs_its_first_version_alone_on_its_services_port() -> None:
    shop = topology.load()
    apps = shop.standalone()
    assert list(apps) == ["users", "catalog", "payments", "orders", "notifications", "gateway"]
    assert apps["orders"].name == "orders-v1"
    assert {app: shop.port(app) for app in apps} == {
        "users": 50051,
        "catalog": 50052,
        "payments": 50053,
        "orders": 50054,
        "notifications": 50055,
        "gateway": 8080,
    }


def test_peers_are_the_addr_settings_of_the_deployment() -> None:
    shop = topology.load()
    assert dict(shop.workloads["orders-v2"].peers) == {
        "USERS_ADDR": "users",
        "CATALOG_ADDR": "catalog",
        "PAYMENTS_ADDR": "payments",
    }
    assert shop.upstreams("notifications") == {
        "orders": "127.0.0.1:50054",
        "payments": "127.0.0.1:50053",
    }


def test_a_service_listens_on_its_topology_port_unless_told() -> None:
    assert ServerSettings.from_env("payments", {}).port == 50053
    assert ServerSettings.from_env("payments", {"PORT": "0"}).port == 0


def test_a_deployment_without_a_command_is_refused_naming_the_field() -> None:
    deployment = {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{}]}}}}
    with pytest.raises(TopologyError, match=r"containers\[0\]\.command"):
        topology.workload(deployment)
