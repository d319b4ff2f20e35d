"""Orders' outbox: each saga transition commits exactly its events, or neither."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from contracts.schemas import Registry, decode, default_registry
from services.orders.domain import Address, Item, Orders, SagaOptions, Status
from services.orders.store import SqlOrderStore
from tests.services.conftest import Opened
from tests.services.orders.fakes import FakeCatalog, FakePayments, FakeUsers


@pytest.fixture
def store(database: str, opened: Opened) -> SqlOrderStore:
    return opened(SqlOrderStore(database))


@pytest.fixture
def orders(store: SqlOrderStore) -> Orders:
    return Orders(store, FakeUsers(), FakeCatalog(), FakePayments(), SagaOptions())


async def published(store: SqlOrderStore) -> list[tuple[str, str, dict[str, Any]]]:
    """(subject, key, record read with the newest schema) of every event in the outbox."""
    registry = default_registry()
    return [
        (e.subject, e.key, decode(registry, e.payload, registry.subject(e.subject).latest))
        for e in await store.outbox.after(0, 1000)
    ]


async def place(orders: Orders, token: str = "tok_visa", **extra: Any) -> Any:
    return await orders.place("req-1", "usr_ann", [Item("sku-a", 2)], token, **extra)


async def test_a_confirmed_order_announces_placed_then_confirmed(
    orders: Orders, store: SqlOrderStore
) -> None:
    order = await place(orders)
    (placed_subject, key, placed), (confirmed_subject, _, confirmed) = await published(store)
    assert (placed_subject, confirmed_subject, key) == (
        "shop.orders.OrderPlaced",
        "shop.orders.OrderConfirmed",
        order.order_id,
    )
    assert placed["items"] == [{"product_id": "sku-a", "quantity": 2}]
    assert placed["shipping_country"] is None
    assert confirmed["total_cents"] == 500
    assert confirmed["payment_id"] == order.payment_id


async def test_a_declined_order_announces_its_cancellation_with_the_reason(
    orders: Orders, store: SqlOrderStore
) -> None:
    order = await place(orders, "tok_decline")
    assert order.status is Status.CANCELLED
    subjects = [subject for subject, _, _ in await published(store)]
    assert subjects == ["shop.orders.OrderPlaced", "shop.orders.OrderCancelled"]
    assert (await published(store))[1][2]["reason"] == order.status_reason != ""


async def test_a_retry_publishes_nothing_new(orders: Orders, store: SqlOrderStore) -> None:
    await place(orders)
    await place(orders)
    assert len(await published(store)) == 2


async def test_cancelling_a_confirmed_order_announces_it(
    orders: Orders, store: SqlOrderStore
) -> None:
    order = await place(orders)
    await orders.cancel(order.order_id, "changed my mind")
    subject, _, record = (await published(store))[-1]
    assert subject == "shop.orders.OrderCancelled"
    assert record["reason"] == "cancelled by customer: changed my mind"


async def test_the_v2_shipping_country_is_published(orders: Orders, store: SqlOrderStore) -> None:
    address = Address("Ann", "1 Main St", "Berlin", "10115", "DE")
    await place(orders, shipping_address=address)
    assert (await published(store))[0][2]["shipping_country"] == "DE"


async def test_a_change_whose_event_cannot_be_written_is_not_saved(
    orders: Orders, store: SqlOrderStore
) -> None:
    order = await place(orders, "tok_decline")
    store.outbox.registry = Registry({})  # every append now fails, as a crash mid-write would
    reopened = replace(order, status_reason="changed")
    with pytest.raises(ValueError, match="unknown subject"):
        await store.save(replace(reopened, step=order.step), "me", 1)
    assert await store.get(order.order_id) == order
    assert len(await published(store)) == 2


async def test_an_order_whose_placed_event_cannot_be_written_is_not_created(
    orders: Orders, store: SqlOrderStore
) -> None:
    store.outbox.registry = Registry({})
    with pytest.raises(ValueError, match="unknown subject"):
        await place(orders)
    assert await store.by_request_id("req-1") is None
