"""Catalog rules against the real store on each backend: reserve all or nothing, release once."""

from __future__ import annotations

import asyncio

import pytest

from services.catalog.demo import DEMO_PRODUCTS
from services.catalog.domain import (
    Catalog,
    Product,
    RequestedLine,
    ReservationLine,
    ReservationState,
)
from services.catalog.store import SqlCatalogStore
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.services.conftest import Opened

BEANS = Product("sku-beans", "Beans", "Roasted beans.", 2400, 10)
MUG = Product("sku-mug", "Mug", "A mug.", 1200, 3)
RARE = Product("sku-rare", "Rare", "Only one.", 9900, 1)


@pytest.fixture
async def catalog(database: str, opened: Opened) -> Catalog:
    catalog = Catalog(opened(SqlCatalogStore(database)))
    await catalog.seed([BEANS, MUG, RARE])
    return catalog


async def stock(catalog: Catalog) -> dict[str, int]:
    return {p.product_id: p.stock for p in (await catalog.list(100, "")).products}


def fields(error: InvalidArgument) -> set[str]:
    return {v.field for v in error.violations}


async def test_seed_only_fills_an_empty_catalog(database: str, opened: Opened) -> None:
    catalog = Catalog(opened(SqlCatalogStore(database)))
    assert await catalog.seed([BEANS])
    assert not await catalog.seed([MUG])
    assert [p.product_id for p in (await catalog.list(0, "")).products] == ["sku-beans"]


async def test_demo_catalog_has_an_item_that_runs_out(database: str, opened: Opened) -> None:
    catalog = Catalog(opened(SqlCatalogStore(database)))
    await catalog.seed(DEMO_PRODUCTS)
    assert (await catalog.get("sku-limited-edition")).stock == 1
    await catalog.reserve("first", [RequestedLine("sku-limited-edition", 1)])
    with pytest.raises(FailedPrecondition) as error:
        await catalog.reserve("second", [RequestedLine("sku-limited-edition", 1)])
    assert error.value.reason == "OUT_OF_STOCK"


async def test_list_pages_in_product_id_order(catalog: Catalog) -> None:
    first = await catalog.list(2, "")
    assert [p.product_id for p in first.products] == ["sku-beans", "sku-mug"]
    second = await catalog.list(2, first.next_page_token)
    assert [p.product_id for p in second.products] == ["sku-rare"]
    assert second.next_page_token == ""


@pytest.mark.parametrize(
    ("size", "token", "bad"),
    [(101, "", "page_size"), (-1, "", "page_size"), (10, "garbage!", "page_token")],
)
async def test_list_rejects_bad_paging(catalog: Catalog, size: int, token: str, bad: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        await catalog.list(size, token)
    assert fields(error.value) == {bad}


async def test_get(catalog: Catalog) -> None:
    assert await catalog.get("sku-mug") == MUG
    with pytest.raises(NotFound) as missing:
        await catalog.get("sku-nothing")
    assert missing.value.reason == "PRODUCT_NOT_FOUND"
    with pytest.raises(InvalidArgument) as empty:
        await catalog.get("")
    assert fields(empty.value) == {"product_id"}


async def test_reserve_takes_stock_and_prices_lines(catalog: Catalog) -> None:
    reservation = await catalog.reserve(
        "ord-1", [RequestedLine("sku-beans", 2), RequestedLine("sku-mug", 3)]
    )
    assert reservation.state is ReservationState.HELD
    assert reservation.lines == (
        ReservationLine("sku-beans", 2, 2400),
        ReservationLine("sku-mug", 3, 1200),
    )
    assert await stock(catalog) == {"sku-beans": 8, "sku-mug": 0, "sku-rare": 1}


async def test_reserve_is_all_or_nothing(catalog: Catalog) -> None:
    with pytest.raises(FailedPrecondition) as error:
        await catalog.reserve(
            "ord-1", [RequestedLine("sku-beans", 2), RequestedLine("sku-rare", 2)]
        )
    assert error.value.reason == "OUT_OF_STOCK"
    assert "sku-rare" in error.value.message
    assert "sku-beans" not in error.value.message
    assert await stock(catalog) == {"sku-beans": 10, "sku-mug": 3, "sku-rare": 1}
    # Nothing was recorded either, so the id can be used once the request fits.
    assert (await catalog.reserve("ord-1", [RequestedLine("sku-rare", 1)])).lines


async def test_reserve_is_idempotent_on_reservation_id(catalog: Catalog) -> None:
    lines = [RequestedLine("sku-beans", 2), RequestedLine("sku-mug", 1)]
    first = await catalog.reserve("ord-1", lines)
    assert await catalog.reserve("ord-1", lines) == first
    assert await catalog.reserve("ord-1", list(reversed(lines))) == first
    assert (await stock(catalog))["sku-beans"] == 8
    with pytest.raises(FailedPrecondition) as error:
        await catalog.reserve("ord-1", [RequestedLine("sku-beans", 3)])
    assert error.value.reason == "RESERVATION_MISMATCH"
    assert (await stock(catalog))["sku-beans"] == 8


async def test_release_returns_stock_exactly_once(catalog: Catalog) -> None:
    lines = [RequestedLine("sku-beans", 4)]
    await catalog.reserve("ord-1", lines)
    released = await catalog.release("ord-1")
    assert released.state is ReservationState.RELEASED
    assert released.lines == (ReservationLine("sku-beans", 4, 2400),)
    assert await catalog.release("ord-1") == released
    assert (await stock(catalog))["sku-beans"] == 10
    # Reserving the released id again is a retry of the first call, not a new reservation.
    assert await catalog.reserve("ord-1", lines) == released
    assert (await stock(catalog))["sku-beans"] == 10


async def test_release_of_an_unknown_reservation_is_harmless(catalog: Catalog) -> None:
    released = await catalog.release("ord-never-reserved")
    assert (released.lines, released.state) == ((), ReservationState.RELEASED)
    assert await catalog.release("ord-never-reserved") == released
    assert await stock(catalog) == {"sku-beans": 10, "sku-mug": 3, "sku-rare": 1}
    # A reserve that arrives after its compensation must not take stock nobody will return.
    with pytest.raises(FailedPrecondition) as late:
        await catalog.reserve("ord-never-reserved", [RequestedLine("sku-beans", 1)])
    assert late.value.reason == "RESERVATION_RELEASED"
    assert (await stock(catalog))["sku-beans"] == 10


@pytest.mark.parametrize(
    ("reservation_id", "lines", "bad"),
    [
        ("", [RequestedLine("sku-beans", 1)], {"reservation_id"}),
        ("r", [], {"lines"}),
        ("r", [RequestedLine("", 1)], {"lines[0].product_id"}),
        ("r", [RequestedLine("sku-beans", 1), RequestedLine("sku-mug", 0)], {"lines[1].quantity"}),
        ("r", [RequestedLine("sku-beans", -2)], {"lines[0].quantity"}),
        (
            "r",
            [RequestedLine("sku-beans", 1), RequestedLine("sku-beans", 2)],
            {"lines[1].product_id"},
        ),
        (
            "r",
            [RequestedLine("sku-mug", 1), RequestedLine("sku-nothing", 1)],
            {"lines[1].product_id"},
        ),
        (
            "",
            [RequestedLine("", 0)],
            {"reservation_id", "lines[0].product_id", "lines[0].quantity"},
        ),
        (
            "r",
            [RequestedLine("sku-nothing", 1), RequestedLine("sku-mug", 0)],
            {"lines[0].product_id", "lines[1].quantity"},
        ),
    ],
)
async def test_reserve_names_every_bad_field(
    catalog: Catalog, reservation_id: str, lines: list[RequestedLine], bad: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as error:
        await catalog.reserve(reservation_id, lines)
    assert fields(error.value) == bad
    assert await stock(catalog) == {"sku-beans": 10, "sku-mug": 3, "sku-rare": 1}


async def test_release_requires_an_id(catalog: Catalog) -> None:
    with pytest.raises(InvalidArgument) as error:
        await catalog.release("")
    assert fields(error.value) == {"reservation_id"}


async def test_data_survives_reopening(database: str, opened: Opened) -> None:
    first = Catalog(opened(SqlCatalogStore(database)))
    await first.seed([BEANS])
    held = await first.reserve("ord-1", [RequestedLine("sku-beans", 3)])
    again = Catalog(opened(SqlCatalogStore(database)))
    assert not await again.seed([MUG])
    assert (await again.get("sku-beans")).stock == 7
    assert await again.reserve("ord-1", [RequestedLine("sku-beans", 3)]) == held
    assert (await again.release("ord-1")).state is ReservationState.RELEASED
    assert (await Catalog(opened(SqlCatalogStore(database))).get("sku-beans")).stock == 10


async def test_racing_reservations_for_the_last_unit_have_one_winner(
    database: str, opened: Opened
) -> None:
    # Separate connections, as replicas would have: on PostgreSQL the row lock taken by the stock
    # read is what keeps two of them from both taking the last unit.
    first = Catalog(opened(SqlCatalogStore(database)))
    await first.seed([BEANS, MUG, RARE])
    catalogs = [first, *(Catalog(opened(SqlCatalogStore(database))) for _ in range(7))]

    async def reserve(i: int) -> str:
        lines = [RequestedLine("sku-rare", 1), RequestedLine("sku-mug", 1)]
        try:
            await catalogs[i].reserve(f"ord-{i}", lines if i % 2 else lines[::-1])
        except FailedPrecondition as error:
            return error.reason
        return "HELD"

    outcomes = await asyncio.gather(*(reserve(i) for i in range(len(catalogs))))
    assert sorted(outcomes) == ["HELD"] + ["OUT_OF_STOCK"] * (len(catalogs) - 1)
    assert await stock(first) == {"sku-beans": 10, "sku-mug": 2, "sku-rare": 0}
