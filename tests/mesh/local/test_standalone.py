"""`make up MESH=off` is the local mesh with no sidecars rendered: each app's first version runs
alone, its peers call each other's apps directly, and the REST gateway fronts them."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest

from mesh.local.supervisor import LocalMesh
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.mesh.local.conftest import gateway_env
from tests.system.conftest import create_user

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    workdir = tmp_path_factory.mktemp("standalone")
    with LocalMesh(
        workdir, sidecars=False, service_env={"gateway": gateway_env(workdir)}
    ) as running:
        yield running


def test_each_app_runs_once_with_no_sidecar(shop: LocalMesh) -> None:
    assert shop.sidecars == {}
    assert list(shop.workloads) == [
        "users",
        "catalog",
        "payments",
        "orders",
        "notifications",
        "gateway",
    ]
    assert shop.workloads["orders"].name == "orders-v1"
    assert all(ports.inbound == 0 and not ports.outbound for ports in shop.plan.values())
    assert not (shop.workdir / "mesh" / "state.json").exists()  # nothing for mesh-apply to find


def test_peers_are_called_directly(shop: LocalMesh) -> None:
    assert shop.stack is not None
    env = shop.stack.workloads["orders"].env
    assert env["USERS_ADDR"] == shop.address("users")
    assert env["PAYMENTS_ADDR"] == shop.address("payments")
    user_id = create_user(shop.stack, "standalone@example.com")
    with grpc.insecure_channel(shop.address("orders")) as channel:
        placed = orders_pb2_grpc.OrderServiceStub(channel).PlaceOrder(
            orders_pb2.PlaceOrderRequest(
                request_id="standalone-1",
                user_id=user_id,
                items=[orders_pb2.OrderItem(product_id="sku-mug", quantity=1)],
                payment_token="tok_visa",
            ),
            timeout=10,
        )
    assert placed.order.status == orders_pb2.ORDER_STATUS_CONFIRMED


def test_the_gateway_fronts_the_apps(shop: LocalMesh) -> None:
    reply = httpx.get(f"http://{shop.address('gateway')}/v1/products", timeout=10)
    assert reply.status_code == 200
    assert reply.json()["products"]
