"""orders v1 and v2 as two processes on one PostgreSQL database, with users, catalog and payments
on databases of their own: each sees the other's orders, a request id makes one order whichever
process takes the retries, and a saga's lease keeps the other process out until it expires."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import psycopg
import pytest

from mesh.local.stack import LocalStack
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.system.conftest import create_user
from tests.system.test_saga import stock
from tools.postgres import TempPostgres

pytestmark = pytest.mark.system

ORDERS = ("orders-v1", "orders-v2")
PENDING = orders_pb2.ORDER_STATUS_PENDING


@pytest.fixture(scope="module")
def urls(postgres: TempPostgres) -> dict[str, str]:
    """A database per service; both orders versions get the same one."""
    shared = {name: postgres.create_database(name) for name in ("users", "catalog", "payments")}
    orders = postgres.create_database("orders")
    return {**shared, **dict.fromkeys(ORDERS, orders)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, urls: dict[str, str]) -> Iterator[LocalStack]:
    # The orders Deployments name their module and peers (mesh/base); the stack wires both.
    service_env = {name: {"DATABASE_URL": url} for name, url in urls.items()}
    for name in ORDERS:
        service_env[name].update(SERVICE_VERSION=name[-2:], SAGA_RECOVERY_SECONDS="0.2")
    with LocalStack(
        tmp_path_factory.mktemp("pg-stack"),
        services=list(urls),
        env={"LOG_LEVEL": "WARNING"},
        service_env=service_env,
        startup_timeout=60,
    ) as running:
        yield running


def place(stack: LocalStack, via: str, request_id: str, user_id: str) -> orders_pb2.Order:
    with grpc.insecure_channel(stack.address(via)) as channel:
        reply = orders_pb2_grpc.OrderServiceStub(channel).PlaceOrder(
            orders_pb2.PlaceOrderRequest(
                request_id=request_id,
                user_id=user_id,
                items=[orders_pb2.OrderItem(product_id="sku-mug", quantity=1)],
                payment_token="tok_visa",
            ),
            timeout=20,
        )
    return reply.order


def get_order(stack: LocalStack, via: str, order_id: str) -> orders_pb2.Order:
    with grpc.insecure_channel(stack.address(via)) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        return stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5).order


def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(sql.replace("?", "%s"), params).fetchall()


def charges(urls: dict[str, str], key: str) -> list[tuple[object, ...]]:
    return query(
        urls["payments"], "SELECT payment_id, state FROM payments WHERE idempotency_key = ?", key
    )


def test_each_version_serves_the_orders_the_other_placed(stack: LocalStack) -> None:
    user = create_user(stack, "both@example.com")
    from_v1 = place(stack, "orders-v1", "both-1", user)
    from_v2 = place(stack, "orders-v2", "both-2", user)
    assert from_v1.status == from_v2.status == orders_pb2.ORDER_STATUS_CONFIRMED
    assert get_order(stack, "orders-v2", from_v1.order_id) == from_v1
    assert get_order(stack, "orders-v1", from_v2.order_id) == from_v2


def test_retries_split_across_versions_make_one_order_and_one_charge(
    stack: LocalStack, urls: dict[str, str]
) -> None:
    user = create_user(stack, "split@example.com")
    before = stock(stack, "sku-mug")
    with ThreadPoolExecutor(20) as pool:
        placed = list(pool.map(lambda i: place(stack, ORDERS[i % 2], "split-1", user), range(20)))
    assert {o.order_id for o in placed} == {placed[0].order_id}
    # A retry answers once the saga stops running: CONFIRMED, or PENDING if a slow peer
    # interrupted it (a loaded machine), in which case the recovery loop finishes it.
    pending, confirmed = orders_pb2.ORDER_STATUS_PENDING, orders_pb2.ORDER_STATUS_CONFIRMED
    assert {o.status for o in placed} <= {pending, confirmed}
    deadline = time.monotonic() + 30
    order = get_order(stack, "orders-v2", placed[0].order_id)
    while order.status == pending and time.monotonic() < deadline:
        time.sleep(0.2)
        order = get_order(stack, "orders-v2", placed[0].order_id)
    assert order.status == confirmed
    assert len(charges(urls, placed[0].order_id)) == 1
    assert stock(stack, "sku-mug") == before - 1


def charged_order(urls: dict[str, str], user_id: str) -> str | None:
    """The user's one order once payments has charged it, else None."""
    rows = query(urls["orders-v1"], "SELECT order_id FROM orders WHERE user_id = ?", user_id)
    return str(rows[0][0]) if rows and charges(urls, str(rows[0][0])) else None


def test_a_live_lease_holds_off_the_other_version_until_it_expires(
    stack: LocalStack, urls: dict[str, str]
) -> None:
    # v1 stops after charging and keeps its lease (3 s); v2 looks for unsettled sagas every 0.2 s.
    v1 = stack.workloads["orders-v1"]
    v1.env.update(SAGA_HOLD_AFTER="CHARGING", SAGA_LEASE_SECONDS="3")
    stack.stop("orders-v1")
    stack.start("orders-v1")
    user = create_user(stack, "lease@example.com")
    with ThreadPoolExecutor(1) as pool:
        placing = pool.submit(place, stack, "orders-v1", "lease-1", user)
        deadline = time.monotonic() + 15
        while (order_id := charged_order(urls, user)) is None:
            assert time.monotonic() < deadline, "the charge never happened"
            time.sleep(0.05)
        charged_at = time.monotonic()
        time.sleep(1.0)
        held = get_order(stack, "orders-v2", order_id)
        assert held.status == PENDING, "v2 took a saga v1 still leased"
        assert time.monotonic() - charged_at < 3, "too slow to observe the live lease"
        stack.kill("orders-v1")
        with pytest.raises(grpc.RpcError):
            placing.result(timeout=10)
    deadline = time.monotonic() + 20
    while (order := get_order(stack, "orders-v2", order_id)).status == PENDING:
        assert time.monotonic() < deadline, "v2 never resumed the saga after the lease expired"
        time.sleep(0.1)
    assert order.status == orders_pb2.ORDER_STATUS_CONFIRMED
    assert [state for _, state in charges(urls, order_id)] == ["CAPTURED"]
    del v1.env["SAGA_HOLD_AFTER"]
    stack.start("orders-v1")
