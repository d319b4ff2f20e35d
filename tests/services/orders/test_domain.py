"""The order saga against boundary fakes and the real SQLite store in memory."""

from __future__ import annotations

import asyncio

import pytest

from services.orders.domain import Address, Item, Orders, SagaOptions, Status
from services.orders.store import SqlOrderStore
from services.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from tests.services.conftest import Opened
from tests.services.orders.fakes import FakeCatalog, FakePayments, FakeUsers


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog()


@pytest.fixture
def payments() -> FakePayments:
    return FakePayments()


@pytest.fixture
def store(database: str, opened: Opened) -> SqlOrderStore:
    return opened(SqlOrderStore(database))


@pytest.fixture
def orders(store: SqlOrderStore, catalog: FakeCatalog, payments: FakePayments) -> Orders:
    return Orders(store, FakeUsers(), catalog, payments, SagaOptions(watch_poll_seconds=0.01))


def two_a(request_id: str = "req-1", token: str = "tok_visa") -> dict[str, object]:
    return {
        "request_id": request_id,
        "user_id": "usr_ann",
        "items": [Item("sku-a", 2)],
        "payment_token": token,
    }


async def test_happy_path_confirms_with_prices(
    orders: Orders, catalog: FakeCatalog, payments: FakePayments
) -> None:
    order = await orders.place(**two_a())  # type: ignore[arg-type]
    assert order.status is Status.CONFIRMED
    assert order.total_cents == 500
    assert order.items == (Item("sku-a", 2, 250),)
    assert catalog.stock["sku-a"] == 8
    assert payments.captured == {order.order_id: (order.payment_id, 500)}
    assert await orders.get(order.order_id) == order


async def test_declined_payment_cancels_and_restores_stock(
    orders: Orders, catalog: FakeCatalog, payments: FakePayments
) -> None:
    order = await orders.place(**two_a(token="tok_decline"))  # type: ignore[arg-type]
    assert order.status is Status.CANCELLED
    assert "declined" in order.status_reason
    assert catalog.stock["sku-a"] == 10
    assert payments.captured == {}


async def test_out_of_stock_cancels_without_charging(
    orders: Orders, catalog: FakeCatalog, payments: FakePayments
) -> None:
    order = await orders.place("req-1", "usr_ann", [Item("sku-b", 2)], "tok_visa")
    assert order.status is Status.CANCELLED
    assert "out of stock" in order.status_reason
    assert catalog.stock["sku-b"] == 1
    assert payments.captured == {}


async def test_retry_returns_the_same_order_and_charges_once(
    orders: Orders, payments: FakePayments
) -> None:
    results = await asyncio.gather(*(orders.place(**two_a()) for _ in range(20)))  # type: ignore[arg-type]
    assert {o.order_id for o in results} == {results[0].order_id}
    assert {o.status for o in results} == {Status.CONFIRMED}
    assert len(payments.captured) == 1


async def test_reusing_a_request_id_for_another_order_is_refused(orders: Orders) -> None:
    await orders.place(**two_a())  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition) as error:
        await orders.place("req-1", "usr_ann", [Item("sku-a", 3)], "tok_visa")
    assert error.value.reason == "REQUEST_ID_REUSED"


async def test_unreachable_peer_leaves_pending_then_recovery_finishes(
    orders: Orders, payments: FakePayments, catalog: FakeCatalog
) -> None:
    payments.down = True
    order = await orders.place(**two_a())  # type: ignore[arg-type]
    assert order.status is Status.PENDING
    assert catalog.stock["sku-a"] == 8
    payments.down = False
    assert await orders.recover() == 1
    assert (await orders.get(order.order_id)).status is Status.CONFIRMED
    assert len(payments.captured) == 1


async def test_recovery_in_a_new_process_resumes_a_crashed_saga(
    store: SqlOrderStore, catalog: FakeCatalog, payments: FakePayments
) -> None:
    crashed = Orders(store, FakeUsers(), catalog, payments, SagaOptions(lease_seconds=0))
    payments.down = True
    order = await crashed.place(**two_a())  # type: ignore[arg-type]
    payments.down = False
    restarted = Orders(store, FakeUsers(), catalog, payments)
    await restarted.recover()
    assert (await restarted.get(order.order_id)).status is Status.CONFIRMED


async def test_compensation_interrupted_is_finished_by_recovery(
    orders: Orders, catalog: FakeCatalog, payments: FakePayments
) -> None:
    order = await orders.place(**two_a())  # type: ignore[arg-type]
    catalog.down = True
    with pytest.raises(Unavailable):
        await orders.cancel(order.order_id, "")
    catalog.down = False
    await orders.recover()
    cancelled = await orders.get(order.order_id)
    assert cancelled.status is Status.CANCELLED
    assert catalog.stock["sku-a"] == 10
    assert payments.refunded == {order.payment_id}


async def test_cancel_refunds_and_releases_once(
    orders: Orders, catalog: FakeCatalog, payments: FakePayments
) -> None:
    order = await orders.place(**two_a())  # type: ignore[arg-type]
    cancelled = await orders.cancel(order.order_id, "changed my mind")
    again = await orders.cancel(order.order_id, "")
    assert cancelled.status is again.status is Status.CANCELLED
    assert cancelled.status_reason == "cancelled by customer: changed my mind"
    assert catalog.stock["sku-a"] == 10
    assert payments.refunded == {order.payment_id}


async def test_watch_streams_until_final(orders: Orders, payments: FakePayments) -> None:
    payments.down = True
    order = await orders.place(**two_a())  # type: ignore[arg-type]
    seen = []

    async def watch() -> None:
        async for update in orders.watch(order.order_id):
            seen.append(update.status)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.05)
    payments.down = False
    await orders.recover()
    await asyncio.wait_for(watcher, 2)
    assert seen == [Status.PENDING, Status.CONFIRMED]


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"request_id": ""}, {"request_id"}),
        ({"user_id": ""}, {"user_id"}),
        ({"items": []}, {"items"}),
        ({"items": [Item("sku-a", 0)]}, {"items[0].quantity"}),
        ({"items": [Item("", 1)]}, {"items[0].product_id"}),
        ({"items": [Item("sku-a", 1), Item("sku-a", 1)]}, {"items[1].product_id"}),
        ({"payment_token": ""}, {"payment_token"}),
        ({"user_id": "usr_nobody"}, {"user_id"}),
        ({"items": [Item("sku-a", 1), Item("sku-unknown", 1)]}, {"items[1].product_id"}),
        # Unknown ids come back together with the cheap checks' violations, in one answer.
        (
            {
                "request_id": "",
                "user_id": "usr_nobody",
                "payment_token": "",
                "items": [Item("sku-unknown", 0), Item("", 1)],
            },
            {
                "request_id",
                "user_id",
                "payment_token",
                "items[0].product_id",
                "items[0].quantity",
                "items[1].product_id",
            },
        ),
    ],
)
async def test_place_names_every_bad_field(
    orders: Orders, change: dict[str, object], fields: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as error:
        await orders.place(**{**two_a(), **change})  # type: ignore[arg-type]
    assert {v.field for v in error.value.violations} == fields


async def test_v2_address_is_validated_and_kept(orders: Orders) -> None:
    bad = Address("Ann", "", "Berlin", "10115", "Germany")
    with pytest.raises(InvalidArgument) as error:
        await orders.place(**two_a(), shipping_address=bad)  # type: ignore[arg-type]
    assert {v.field for v in error.value.violations} == {
        "shipping_address.street",
        "shipping_address.country_code",
    }
    good = Address("Ann", "Main St 1", "Berlin", "10115", "DE")
    order = await orders.place(**two_a(), shipping_address=good)  # type: ignore[arg-type]
    assert (await orders.get(order.order_id)).shipping_address == good


async def test_ownership_and_lookup_errors(orders: Orders) -> None:
    order = await orders.place(**two_a())  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        await orders.get(order.order_id, caller="usr_bob")
    with pytest.raises(PermissionDenied):
        await orders.place(**two_a("req-2"), caller="usr_bob")  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        await orders.list("usr_ann", 10, "", caller="usr_bob")
    with pytest.raises(NotFound):
        await orders.get("ord_missing")


async def test_list_is_newest_first_and_pages(orders: Orders) -> None:
    placed = [(await orders.place(**two_a(f"req-{i}"))).order_id for i in range(3)]  # type: ignore[arg-type]
    first = await orders.list("usr_ann", 2, "", None)
    rest = await orders.list("usr_ann", 2, first.next_page_token, None)
    assert [o.order_id for o in first.orders + rest.orders] == placed[::-1]
    assert rest.next_page_token == ""
