"""Events across real processes: orders and notifications are SIGKILLed while 50 orders flow, and
afterwards every committed event is in the feed exactly once, and every change has its event,
over the embedded gRPC stream and over a real Kafka broker."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from mesh.local.stack import LocalStack
from shop.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.system.conftest import create_user
from tools.kafka import KafkaBroker

pytestmark = pytest.mark.system

ORDERS = 50
STATES = "SELECT order_id, status FROM orders"
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def rows(stack: LocalStack, database: str, query: str) -> list[tuple[str, ...]]:
    """Rows of a service's own database, read-only: the ground truth of what it committed."""
    path = Path(stack.workloads[database].env["DATABASE_PATH"])
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [tuple(map(str, row)) for row in db.execute(query).fetchall()]


def order_states(stack: LocalStack) -> dict[str, str]:
    return {order_id: status for order_id, status in rows(stack, "orders", STATES)}


def orders_call(stack: LocalStack, method: str, request: object) -> orders_pb2.Order:
    """Call orders until it answers, as a client with a request id may: orders is being killed."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with grpc.insecure_channel(stack.address("orders")) as channel:
                reply = getattr(orders_pb2_grpc.OrderServiceStub(channel), method)(
                    request, timeout=10
                )
            return reply.order  # type: ignore[no-any-return]
        except grpc.RpcError as error:
            if error.code() not in RETRYABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def place(stack: LocalStack, user_id: str, n: int) -> orders_pb2.Order:
    product = "sku-limited-edition" if n in (7, 8) else ("sku-mug", "sku-espresso")[n % 2]
    request = orders_pb2.PlaceOrderRequest(
        request_id=f"events-{n}",
        user_id=user_id,
        items=[orders_pb2.OrderItem(product_id=product, quantity=1)],
        payment_token="tok_decline" if n % 3 == 0 else "tok_visa",
    )
    return orders_call(stack, "PlaceOrder", request)


def feed(stack: LocalStack, user_id: str) -> list[notifications_pb2.Notification]:
    found: list[notifications_pb2.Notification] = []
    token = ""
    with grpc.insecure_channel(stack.address("notifications")) as channel:
        stub = notifications_pb2_grpc.NotificationServiceStub(channel)
        while True:
            page = stub.ListNotifications(
                notifications_pb2.ListNotificationsRequest(
                    user_id=user_id, page_size=100, page_token=token
                ),
                timeout=5,
            )
            found.extend(page.notifications)
            token = page.next_page_token
            if not token:
                return found


def published(stack: LocalStack) -> list[tuple[str, str, str]]:
    """(event id, subject, key) of every event orders and payments committed."""
    query = "SELECT event_id, subject, key FROM outbox ORDER BY offset"
    return [
        (e, s, k) for source in ("orders", "payments") for e, s, k in rows(stack, source, query)
    ]


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture(params=["stream", "kafka"])
def transport(request: pytest.FixtureRequest) -> dict[str, str]:
    """The services' environment for each event transport: the embedded gRPC stream, or a real
    single-node Kafka the outboxes are relayed to and notifications consumes as a group."""
    if request.param == "stream":
        return {}
    broker: KafkaBroker = request.getfixturevalue("kafka")
    return {"EVENTS_BROKER": broker.url}


def test_every_event_reaches_the_feed_once_through_crashes(
    tmp_path: Path, transport: dict[str, str]
) -> None:
    orders_env = {"SAGA_RECOVERY_SECONDS": "0.2", "SAGA_LEASE_SECONDS": "1"}
    with LocalStack(
        tmp_path, env={"LOG_LEVEL": "WARNING", **transport}, service_env={"orders": orders_env}
    ) as stack:
        user = create_user(stack, "events@example.com")
        placed: list[orders_pb2.Order] = []
        done = threading.Semaphore(0)

        def one(n: int) -> None:
            placed.append(place(stack, user, n))
            done.release()

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(one, n) for n in range(ORDERS)]
            for count, crash in ((10, "notifications"), (20, "orders"), (35, "notifications")):
                while len(placed) < count:
                    done.acquire(timeout=30)
                stack.kill(crash)  # SIGKILL while orders are being placed and events flow
                stack.start(crash)
            for future in futures:
                future.result()

        confirmed = [o for o in placed if o.status == orders_pb2.ORDER_STATUS_CONFIRMED]
        for order in confirmed[:5]:  # a customer cancellation refunds: two more events
            orders_call(
                stack, "CancelOrder", orders_pb2.CancelOrderRequest(order_id=order.order_id)
            )

        states = order_states(stack)
        assert len(states) == ORDERS
        deadline = time.monotonic() + 30
        while "PENDING" in states.values() and time.monotonic() < deadline:
            time.sleep(0.2)
            states = order_states(stack)
        assert "PENDING" not in states.values()
        assert {"CONFIRMED", "CANCELLED"} <= set(states.values())

        # No state change without its event, and no event without its change.
        events = published(stack)
        per_order = Counter((subject, key) for _, subject, key in events)
        for order_id, status in states.items():
            assert per_order["shop.orders.OrderPlaced", order_id] == 1
            cancelled = per_order["shop.orders.OrderCancelled", order_id]
            assert cancelled == (status == "CANCELLED")
        payments = rows(stack, "payments", "SELECT payment_id, state FROM payments")
        for payment_id, state in payments:
            assert per_order["shop.payments.PaymentCaptured", payment_id] == (state != "DECLINED")
            assert per_order["shop.payments.PaymentRefunded", payment_id] == (state == "REFUNDED")
        assert sum(1 for _, state in payments if state == "REFUNDED") >= 5

        # Every event is in the feed exactly once, none lost, none doubled.
        expected = sorted(event_id for event_id, _, _ in events)
        deadline = time.monotonic() + 30
        entries = feed(stack, user)
        while len(entries) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.2)
            entries = feed(stack, user)
        assert sorted(n.notification_id for n in entries) == expected
        assert rows(stack, "notifications", "SELECT * FROM dead_letters") == []
        sources = {s for (s,) in rows(stack, "notifications", "SELECT source FROM source_offsets")}
        kafka = {f"kafka:{subject}/0" for subject in {s for _, s, _ in events}}
        assert sources == (kafka if transport else {"orders", "payments"})
