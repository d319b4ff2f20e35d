"""Two orders processes on one database (v1 and v2, or replicas): each store has connections of
its own, and the saga lease and the request id hold between them, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from services.orders.domain import Item, Order, Orders, SagaOptions, Status, Step
from services.orders.store import SqlOrderStore
from services.runtime.clock import utc_now
from tests.services.conftest import Opened, count_rows
from tests.services.orders.fakes import FakeCatalog, FakePayments, FakeUsers

RACERS = 10


def order(request_id: str = "req-1", order_id: str = "ord_1") -> Order:
    now = utc_now()
    return Order(
        order_id=order_id,
        request_id=request_id,
        user_id="usr_ann",
        items=(Item("sku-a", 1),),
        payment_token="tok_visa",
        shipping_address=None,
        step=Step.RESERVING,
        create_time=now,
        update_time=now,
    )


async def test_a_live_lease_keeps_the_other_process_out(database: str, opened: Opened) -> None:
    v1, v2 = opened(SqlOrderStore(database)), opened(SqlOrderStore(database))
    assert await v1.create(order(), "v1", lease_seconds=30) is not None
    assert await v2.leased("ord_1")
    assert not await v2.claim("ord_1", "v2", lease_seconds=30)
    await v2.release_lease("ord_1", "v2")  # not its lease: changes nothing
    assert not await v2.claim("ord_1", "v2", lease_seconds=30)
    await v1.release_lease("ord_1", "v1")
    assert not await v2.leased("ord_1")
    assert await v2.claim("ord_1", "v2", lease_seconds=30)
    assert not await v1.claim("ord_1", "v1", lease_seconds=30)


async def test_racing_claims_on_an_expired_lease_have_one_winner(
    database: str, opened: Opened
) -> None:
    stores = [opened(SqlOrderStore(database)) for _ in range(RACERS)]
    assert await stores[0].create(order(), "crashed", lease_seconds=0) is not None
    won = await asyncio.gather(*(stores[i].claim("ord_1", f"p{i}", 30) for i in range(RACERS)))
    assert won.count(True) == 1


async def test_racing_creates_with_one_request_id_make_one_order(
    database: str, opened: Opened
) -> None:
    stores = [opened(SqlOrderStore(database)) for _ in range(RACERS)]
    created = await asyncio.gather(
        *(stores[i].create(order(order_id=f"ord_{i}"), f"p{i}", 30) for i in range(RACERS))
    )
    assert sum(c is not None for c in created) == 1
    assert await count_rows(database, "orders") == 1
    assert (
        await count_rows(database, "outbox") == 1
    )  # the event commits with the order, or not at all


async def test_two_processes_recovering_together_run_each_saga_once(
    database: str, opened: Opened
) -> None:
    catalog, payments = FakeCatalog(), FakePayments()

    def process(owner_lease: float) -> Orders:
        store = opened(SqlOrderStore(database))
        return Orders(store, FakeUsers(), catalog, payments, SagaOptions(owner_lease, 0.01))

    crashed = process(0)  # its leases are already expired, as after a crash
    payments.down = True
    placed = await crashed.place("req-1", "usr_ann", [Item("sku-a", 2)], "tok_visa")
    assert placed.status is Status.PENDING
    payments.down = False
    v1, v2 = process(30), process(30)
    finished = await asyncio.gather(v1.recover(), v2.recover())
    assert sorted(finished) == [0, 1]
    assert (await v2.get(placed.order_id)).status is Status.CONFIRMED
    assert catalog.stock["sku-a"] == 8
