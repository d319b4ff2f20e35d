"""Faults and resilience in the running mesh: delay, abort with saga compensation, retries that
hide a flaky callee, and outlier detection ejecting a failing instance.

Calls made "as a workload" go to that workload's own sidecar in plaintext, as its app does.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from mesh.local.supervisor import LocalMesh
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.mesh.local.conftest import SCENARIOS, Shop

pytestmark = pytest.mark.system
ORDERS_CLUSTER = "cluster.outbound|50054||orders"


@pytest.fixture(autouse=True)
def base_mesh(mesh: LocalMesh) -> Iterator[None]:
    """Each test starts from and leaves behind the always-on configuration."""
    mesh.apply(None)
    yield
    mesh.apply(None)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def payment_lookup_seconds(mesh: LocalMesh, calls: int = 5) -> float:
    """Median time of a payment lookup made as orders v1 (through its sidecar)."""
    with grpc.insecure_channel(mesh.outbound("orders-v1", "payments")) as channel:
        stub = payments_pb2_grpc.PaymentServiceStub(channel)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetPayment(payments_pb2.GetPaymentRequest(payment_id="pay_none"), timeout=10)
            times.append(time.perf_counter() - start)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    return statistics.median(times)


def test_delay_scenario_adds_the_configured_delay(mesh: LocalMesh) -> None:
    baseline = payment_lookup_seconds(mesh)
    mesh.apply(SCENARIOS / "payments-delay.yaml")  # fixedDelay: 2s
    delayed = payment_lookup_seconds(mesh, calls=3)
    assert delayed - baseline >= 2.0 - 0.05


def test_abort_scenario_returns_its_status_and_the_saga_compensates(
    mesh: LocalMesh, shop: Shop
) -> None:
    mesh.apply(SCENARIOS / "payments-abort.yaml")  # grpcStatus: RESOURCE_EXHAUSTED
    with grpc.insecure_channel(mesh.outbound("orders-v1", "payments")) as channel:
        stub = payments_pb2_grpc.PaymentServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetPayment(payments_pb2.GetPaymentRequest(payment_id="pay_none"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    stock_before = shop.get("/v1/products/sku-french-press")["product"]["stock"]
    placed = shop.place_order("sku-french-press")
    assert placed.status_code == 200, placed.text
    order = placed.json()["order"]
    assert order["status"] == "ORDER_STATUS_CANCELLED", order
    assert shop.get(f"/v1/orders/{order['orderId']}")["order"]["status"] == "ORDER_STATUS_CANCELLED"
    assert shop.get("/v1/products/sku-french-press")["product"]["stock"] == stock_before


def test_retries_hide_a_flaky_callee(mesh: LocalMesh) -> None:
    catalog, gateway = mesh.sidecars["catalog"], mesh.sidecars["gateway"]
    aborts = "http.inbound.fault.aborts_injected"
    retries = "cluster.outbound|50052|v1|catalog.upstream_rq_retry"
    mesh.apply(SCENARIOS / "catalog-flaky-with-retries.yaml")

    with grpc.insecure_channel(mesh.outbound("gateway", "catalog")) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)

        def read(_: int) -> grpc.StatusCode:
            try:
                stub.GetProduct(catalog_pb2.GetProductRequest(product_id="sku-mug"), timeout=10)
            except grpc.RpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        # The fault lives in catalog's new inbound listener: wait until it is the one serving.
        wait_until(lambda: read(0) == grpc.StatusCode.OK and catalog.counter(aborts) > 0, "faults")
        aborted, retried = catalog.counter(aborts), gateway.counter(retries)
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(read, range(1000)))

    assert codes.count(grpc.StatusCode.OK) == 1000, {c: codes.count(c) for c in set(codes)}
    # About 10% of ~1,100 tries were failed on purpose, and the caller's sidecar retried each.
    injected = catalog.counter(aborts) - aborted
    assert injected >= 50
    assert gateway.counter(retries) - retried >= injected


def test_outlier_detection_ejects_the_failing_instance(mesh: LocalMesh) -> None:
    gateway = mesh.sidecars["gateway"]
    mesh.apply(SCENARIOS / "orders-v2-failing.yaml")

    with grpc.insecure_channel(mesh.outbound("gateway", "orders")) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)

        def read(_: int) -> grpc.StatusCode:
            try:
                stub.GetOrder(orders_pb2.GetOrderRequest(order_id="ord_none"), timeout=10)
            except grpc.RpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        ejected = f"{ORDERS_CLUSTER}.outlier_detection.ejections_enforced_consecutive_5xx"
        before = gateway.counter(ejected)
        wait_until(
            lambda: read(0) == grpc.StatusCode.NOT_FOUND and gateway.counter(ejected) > before,
            "an ejection",
        )
        assert gateway.counter(f"{ORDERS_CLUSTER}.outlier_detection.ejections_active") == 1

        served = {name: mesh.served(name) for name in ("orders-v1", "orders-v2")}
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(read, range(200)))

    # Every call reached the app on v1 (which has no such order); v2 saw none of them.
    assert codes == [grpc.StatusCode.NOT_FOUND] * 200
    assert mesh.served("orders-v2") == served["orders-v2"]
    assert mesh.served("orders-v1") - served["orders-v1"] == 200
