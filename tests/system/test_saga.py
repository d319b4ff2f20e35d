"""The order saga across real service processes: compensation, idempotency, crash recovery."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from mesh.local.stack import LocalStack
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.system.conftest import create_user, payments_for

pytestmark = pytest.mark.system


def stock(stack: LocalStack, product_id: str) -> int:
    with grpc.insecure_channel(stack.address("catalog")) as channel:
        reply = catalog_pb2_grpc.CatalogServiceStub(channel).GetProduct(
            catalog_pb2.GetProductRequest(product_id=product_id), timeout=5
        )
    return int(reply.product.stock)


def place(
    stack: LocalStack, request_id: str, user_id: str, product_id: str, quantity: int, token: str
) -> orders_pb2.Order:
    with grpc.insecure_channel(stack.address("orders")) as channel:
        reply = orders_pb2_grpc.OrderServiceStub(channel).PlaceOrder(
            orders_pb2.PlaceOrderRequest(
                request_id=request_id,
                user_id=user_id,
                items=[orders_pb2.OrderItem(product_id=product_id, quantity=quantity)],
                payment_token=token,
            ),
            timeout=10,
        )
    return reply.order


def get_order(stack: LocalStack, order_id: str) -> orders_pb2.Order:
    with grpc.insecure_channel(stack.address("orders")) as channel:
        return (
            orders_pb2_grpc.OrderServiceStub(channel)
            .GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5)
            .order
        )


def test_declined_payment_cancels_and_restores_stock_exactly(stack: LocalStack) -> None:
    user = create_user(stack, "declined@example.com")
    before = stock(stack, "sku-grinder")
    order = place(stack, "declined-1", user, "sku-grinder", 3, "tok_decline")
    assert order.status == orders_pb2.ORDER_STATUS_CANCELLED
    assert "declined" in order.status_reason
    assert stock(stack, "sku-grinder") == before
    assert "CAPTURED" not in {state for _, state in payments_for(stack, order.order_id)}


def test_out_of_stock_cancels_and_charges_nothing(stack: LocalStack) -> None:
    user = create_user(stack, "greedy@example.com")
    available = stock(stack, "sku-limited-edition")
    order = place(stack, "greedy-1", user, "sku-limited-edition", available + 1, "tok_visa")
    assert order.status == orders_pb2.ORDER_STATUS_CANCELLED
    assert "not enough stock" in order.status_reason
    assert payments_for(stack, order.order_id) == []
    assert stock(stack, "sku-limited-edition") == available


def test_twenty_concurrent_retries_make_one_order_and_one_charge(stack: LocalStack) -> None:
    user = create_user(stack, "eager@example.com")
    before = stock(stack, "sku-mug")
    with ThreadPoolExecutor(20) as pool:
        orders = list(
            pool.map(
                lambda _: place(stack, "same-request", user, "sku-mug", 1, "tok_visa"), range(20)
            )
        )
    assert {o.order_id for o in orders} == {orders[0].order_id}
    assert {o.status for o in orders} == {orders_pb2.ORDER_STATUS_CONFIRMED}
    assert len(payments_for(stack, orders[0].order_id)) == 1
    assert stock(stack, "sku-mug") == before - 1


def wait_until_settled(stack: LocalStack, order_id: str, timeout: float = 20) -> orders_pb2.Order:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order = get_order(stack, order_id)
        if order.status != orders_pb2.ORDER_STATUS_PENDING:
            return order
        time.sleep(0.1)
    raise AssertionError(f"order {order_id} still PENDING after {timeout}s")


def test_orders_killed_between_charge_and_confirmation_recovers(tmp_path: Path) -> None:
    hold = {
        "orders": {
            "SAGA_HOLD_AFTER": "CHARGING",
            "SAGA_LEASE_SECONDS": "1",
            "SAGA_RECOVERY_SECONDS": "0.2",
        }
    }
    with LocalStack(tmp_path, env={"LOG_LEVEL": "WARNING"}, service_env=hold) as stack:
        user = create_user(stack, "crash@example.com")
        before = stock(stack, "sku-french-press")
        with ThreadPoolExecutor(1) as pool:
            placing = pool.submit(place, stack, "crash-1", user, "sku-french-press", 1, "tok_visa")
            deadline = time.monotonic() + 10
            while not payments_for_order_of(stack, user) and time.monotonic() < deadline:
                time.sleep(0.05)
            charged = payments_for_order_of(stack, user)
            assert [state for _, state in charged] == ["CAPTURED"], "the charge never happened"
            stack.kill("orders")  # after the charge, before the saga recorded it
            with pytest.raises(grpc.RpcError):
                placing.result(timeout=10)
        del stack.workloads["orders"].env["SAGA_HOLD_AFTER"]
        stack.start("orders")
        order_id = only_order_of(stack, user)
        order = wait_until_settled(stack, order_id)
        payments = payments_for(stack, order_id)
        assert len(payments) == 1
        if order.status == orders_pb2.ORDER_STATUS_CONFIRMED:
            assert order.payment_id == payments[0][0]
            assert stock(stack, "sku-french-press") == before - 1
        else:
            assert order.status == orders_pb2.ORDER_STATUS_CANCELLED
            assert payments[0][1] == "REFUNDED"
            assert stock(stack, "sku-french-press") == before


def only_order_of(stack: LocalStack, user_id: str) -> str:
    with grpc.insecure_channel(stack.address("orders")) as channel:
        reply = orders_pb2_grpc.OrderServiceStub(channel).ListOrders(
            orders_pb2.ListOrdersRequest(user_id=user_id), timeout=5
        )
    (order,) = reply.orders
    return str(order.order_id)


def payments_for_order_of(stack: LocalStack, user_id: str) -> list[tuple[str, str]]:
    """Payments of the user's single order, found by reading the orders database."""
    path = Path(stack.workloads["orders"].env["DATABASE_PATH"])
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute("SELECT order_id FROM orders WHERE user_id = ?", (user_id,)).fetchone()
    return [] if row is None else payments_for(stack, row[0])
