"""notifications' message pacts with orders and payments: one Avro event per subject, read by
notifications' real feed consumer (`services/notifications/consumer.py`).

Each test records an asynchronous message: the record as JSON, with matchers for exactly the
fields notifications' feed reads, and notifications' reader schema in the metadata. The
handler turns the message into the wire-format bytes a producer would send and runs it through
`FeedConsumer` into a real feed; `test_events_providers.py` verifies that orders and payments
write events that this reader schema decodes into the same shape.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from pact import Pact, match

from contracts.pact import avro, proto3
from contracts.schemas import default_registry
from services.notifications.consumer import CONSUMER, SOURCES, FeedConsumer, readers
from services.notifications.domain import Notification, Notifications
from services.notifications.store import SqlNotificationStore
from shop.events.v1 import events_pb2

pytestmark = pytest.mark.pact_consumer

NewPact = Callable[[str, str], Pact]
SOURCE_OF = {subject: source for source, subjects in SOURCES.items() for subject in subjects}
WHEN = proto3.timestamp("2026-03-01T09:30:00.123456Z")


def feed_entry(contents: str | bytes | None, metadata: Mapping[str, Any]) -> Notification:
    """Deliver the message to notifications' real consumer; returns the feed entry it made."""
    subject = str(metadata[avro.SUBJECT])
    reader = readers(default_registry())[subject]
    assert metadata[avro.READER_SCHEMA] == avro.without_docs(reader.definition)
    record = json.loads(contents or "{}")
    event = events_pb2.Event(
        offset=1,
        event_id="evt_pact",
        subject=subject,
        key="pact",
        payload=avro.wire_payload(reader, record),
    )
    feed = asyncio.run(apply(SOURCE_OF[subject], event, record["user_id"]))
    assert len(feed) == 1, f"{subject}: no feed entry (the event was set aside)"
    return feed[0]


async def apply(source: str, event: events_pb2.Event, user_id: str) -> list[Notification]:
    """`event` applied by the real consumer to a fresh feed; returns the user's entries."""
    store = SqlNotificationStore(":memory:")
    try:
        notifications = Notifications(store)
        await FeedConsumer(notifications, default_registry()).apply(source, event)
        return (await notifications.list(user_id, 10, "")).notifications
    finally:
        await store.close()


def receive(
    check: Callable[[Notification], None],
) -> Callable[[str | bytes | None, dict[str, object]], None]:
    """A message handler: the feed entry the message makes must pass `check`."""

    def handler(contents: str | bytes | None, metadata: dict[str, object]) -> None:
        check(feed_entry(contents, metadata))

    return handler


def expect(
    new_pact: NewPact, subject: str, description: str, state: str, contents: dict[str, Any]
) -> Pact:
    pact = new_pact(CONSUMER, SOURCE_OF[subject])
    reader = readers(default_registry())[subject]
    avro.expect(pact, description, state, reader, contents)
    return pact


def test_order_placed(new_pact: NewPact) -> None:
    subject = "shop.orders.OrderPlaced"
    pact = expect(
        new_pact,
        subject,
        "an OrderPlaced event",
        "an order with a shipping address is placed",
        {
            "order_id": match.str("ord_0001"),
            "user_id": match.str("usr_ann"),
            "items": match.each_like({"quantity": match.int(2)}, min=1),
            "shipping_country": match.str("DE"),
            "occurred_at": WHEN,
        },
    )

    def check(entry: Notification) -> None:
        assert (entry.user_id, entry.subject) == ("usr_ann", "Order received")
        assert entry.body == "We received order ord_0001 for 2 item(s), shipping to DE."

    pact.verify(receive(check), "Async")


def test_order_confirmed(new_pact: NewPact) -> None:
    subject = "shop.orders.OrderConfirmed"
    pact = expect(
        new_pact,
        subject,
        "an OrderConfirmed event",
        "an order is confirmed",
        {
            "order_id": match.str("ord_0001"),
            "user_id": match.str("usr_ann"),
            "total_cents": match.int(2400),
            "occurred_at": WHEN,
        },
    )

    def check(entry: Notification) -> None:
        assert entry.subject == "Order confirmed"
        assert entry.body == "Order ord_0001 is confirmed; 24.00 USD was charged."

    pact.verify(receive(check), "Async")


def test_order_cancelled(new_pact: NewPact) -> None:
    subject = "shop.orders.OrderCancelled"
    pact = expect(
        new_pact,
        subject,
        "an OrderCancelled event",
        "an order is cancelled because its card was declined",
        {
            "order_id": match.str("ord_0001"),
            "user_id": match.str("usr_ann"),
            "reason": match.str("payment failed: the card was declined"),
            "occurred_at": WHEN,
        },
    )

    def check(entry: Notification) -> None:
        assert entry.subject == "Order cancelled"
        assert entry.body == (
            "Order ord_0001 was cancelled: payment failed: the card was declined."
        )

    pact.verify(receive(check), "Async")


def test_payment_captured(new_pact: NewPact) -> None:
    subject = "shop.payments.PaymentCaptured"
    pact = expect(
        new_pact,
        subject,
        "a PaymentCaptured event",
        "a payment is captured",
        {
            "payment_id": match.str("pay_0001"),
            "user_id": match.str("usr_ann"),
            "amount_cents": match.int(1200),
            "occurred_at": WHEN,
        },
    )

    def check(entry: Notification) -> None:
        assert entry.subject == "Payment received"
        assert entry.body == "We charged 12.00 USD (pay_0001)."

    pact.verify(receive(check), "Async")


def test_payment_refunded(new_pact: NewPact) -> None:
    subject = "shop.payments.PaymentRefunded"
    pact = expect(
        new_pact,
        subject,
        "a PaymentRefunded event",
        "a payment is refunded",
        {
            "payment_id": match.str("pay_0001"),
            "user_id": match.str("usr_ann"),
            "amount_cents": match.int(1200),
            "occurred_at": WHEN,
        },
    )

    def check(entry: Notification) -> None:
        assert entry.subject == "Payment refunded"
        assert entry.body == "We refunded 12.00 USD (pay_0001)."

    pact.verify(receive(check), "Async")
