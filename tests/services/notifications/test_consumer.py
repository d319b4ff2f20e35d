"""The feed from events, in process: a real outbox stream consumed into the real store."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from contracts.schemas import default_registry, encode
from services.notifications.consumer import FeedConsumer
from services.notifications.domain import Notifications
from services.notifications.store import SqlNotificationStore
from services.runtime.database import connect
from services.runtime.event_consumer import consume
from services.runtime.event_stream import event_stream_service
from services.runtime.outbox import NewEvent, Outbox
from services.runtime.server import build_server
from tests.services.conftest import server_settings

WHEN = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def placed(n: int) -> NewEvent:
    record = {
        "order_id": f"ord_{n}",
        "user_id": "usr_ann",
        "items": [{"product_id": "sku-mug", "quantity": n}],
        "shipping_country": None,
        "occurred_at": WHEN + timedelta(minutes=n),  # the feed is newest first
    }
    return NewEvent("shop.orders.OrderPlaced", f"ord_{n}", record)


async def publish(outbox: Outbox, *events: NewEvent) -> None:
    await outbox.db.transaction(lambda: outbox.append(events))


async def feed_of(notifications: Notifications, want: int) -> list[str]:
    """The feed's bodies once it has `want` entries, or whatever it has after 5 seconds."""
    deadline = time.monotonic() + 5
    while True:
        bodies = [n.body for n in (await notifications.list("usr_ann", 100, "")).notifications]
        if len(bodies) >= want or time.monotonic() > deadline:
            return bodies
        await asyncio.sleep(0.02)


@pytest.fixture
def outbox() -> Outbox:
    return Outbox(connect(":memory:"))


async def run_feed(outbox: Outbox, notifications: Notifications, want: int) -> list[str]:
    """Serve `outbox`, consume it into `notifications` until `want` entries and the producer
    has the consumer's ack for the last one, then stop."""
    running = await build_server(server_settings(), [event_stream_service(outbox)])
    feed = FeedConsumer(notifications, default_registry())
    task = asyncio.create_task(
        consume(f"127.0.0.1:{running.port}", "orders", "notifications", feed, retry_seconds=0.05)
    )
    try:
        bodies = await feed_of(notifications, want)
        last = (await outbox.after(0, 1000))[-1].offset
        for _ in range(100):
            if await outbox.ack("notifications", 0) == last:  # acking 0 reads the committed offset
                break
            await asyncio.sleep(0.02)
        assert await outbox.ack("notifications", 0) == last
        return bodies
    finally:
        task.cancel()
        await running.stop(0)


async def test_events_become_feed_entries_once_even_when_replayed(outbox: Outbox) -> None:
    store = SqlNotificationStore(":memory:")
    notifications = Notifications(store)
    await publish(outbox, placed(1), placed(2))
    assert await run_feed(outbox, notifications, 2) == [
        "We received order ord_2 for 2 item(s).",
        "We received order ord_1 for 1 item(s).",
    ]
    offset = await store.applied_offset("orders")
    assert offset == (await outbox.after(0, 10))[-1].offset
    # Forget the offset, as a lost commit would: the redelivered events add nothing.
    await store._db.execute("DELETE FROM source_offsets")
    await publish(outbox, placed(3))
    bodies = await run_feed(outbox, notifications, 3)
    assert sorted(bodies) == sorted(
        f"We received order ord_{n} for {n} item(s)." for n in (1, 2, 3)
    )


async def test_an_undecodable_event_is_set_aside_and_delivery_goes_on(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqlNotificationStore(":memory:")
    await outbox.db.execute(
        "INSERT INTO outbox (event_id, subject, key, payload, headers, create_time)"
        " VALUES ('evt_bad', 'shop.orders.OrderPlaced', 'ord_x', ?, '{}', 0)",
        (b"\x00\x00\x00\x00\x01\xff",),
    )
    await publish(outbox, placed(1))
    with caplog.at_level(logging.ERROR, logger="shop.notifications.events"):
        bodies = await run_feed(outbox, Notifications(store), 1)
    assert bodies == ["We received order ord_1 for 1 item(s)."]
    (letter,) = (await store._db.execute("SELECT event_id, reason FROM dead_letters")).rows
    assert letter["event_id"] == "evt_bad"
    assert "shop.orders.OrderPlaced v1" in letter["reason"]
    assert any(r.getMessage() == "event set aside: it cannot be decoded" for r in caplog.records)


async def test_an_event_written_with_an_older_schema_is_read_with_the_newer_one(
    outbox: Outbox,
) -> None:
    v1 = default_registry().subject("shop.orders.OrderPlaced").versions[0]
    record = {**placed(5).record}
    del record["shipping_country"]
    await outbox.db.execute(
        "INSERT INTO outbox (event_id, subject, key, payload, headers, create_time)"
        " VALUES ('evt_v1', 'shop.orders.OrderPlaced', 'ord_5', ?, ?, 0)",
        (encode(v1, record), json.dumps({})),
    )
    bodies = await run_feed(outbox, Notifications(SqlNotificationStore(":memory:")), 1)
    assert bodies == ["We received order ord_5 for 5 item(s)."]
