"""Catalog conformance: the same cases against the Python catalog and the Go one (catalog-go),
each a real server on 127.0.0.1 called over the network: encoding, idempotency, error statuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from grpc import aio

from mesh.local.stack import LocalStack
from services.catalog.demo import DEMO_PRODUCTS
from services.catalog.domain import Catalog
from services.catalog.servicer import CatalogServicer
from services.catalog.store import SqlCatalogStore
from services.runtime.server import Service
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tests.services.conftest import error_reason, field_violations, serving
from tools import interop
from tools.polyglot import PolyglotError

Line = catalog_pb2.ReservationLine
IMPLEMENTATIONS = [
    pytest.param("python", id="python"),
    pytest.param("go", id="go", marks=[pytest.mark.system, pytest.mark.interop]),
]


async def catalog_service() -> Service:
    catalog = Catalog(SqlCatalogStore(":memory:"))
    await catalog.seed(DEMO_PRODUCTS)
    return Service(
        "shop.catalog.v1.CatalogService",
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
        CatalogServicer(catalog),
    )


@pytest.fixture(scope="session")
def catalog_go() -> str:
    try:
        interop.build_catalog_go()
    except PolyglotError as error:
        pytest.fail(f"cannot build catalog-go: {error}")
    return str(interop.CATALOG_GO)


@pytest.fixture(params=IMPLEMENTATIONS)
async def stub(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceAsyncStub]:
    """A client of a fresh catalog with the demo products, in the implementation under test."""
    if request.param == "python":
        async with serving([await catalog_service()]) as channel:
            yield catalog_pb2_grpc.CatalogServiceStub(channel)
        return
    binary = request.getfixturevalue("catalog_go")
    with LocalStack(tmp_path, services=["catalog"], commands={"catalog": [binary]}) as stack:
        async with aio.insecure_channel(stack.address("catalog")) as channel:
            yield catalog_pb2_grpc.CatalogServiceStub(channel)


def reserve(reservation_id: str, *lines: tuple[str, int]) -> catalog_pb2.ReserveStockRequest:
    return catalog_pb2.ReserveStockRequest(
        reservation_id=reservation_id,
        lines=[Line(product_id=product_id, quantity=quantity) for product_id, quantity in lines],
    )


async def test_list_and_get_products(stub: catalog_pb2_grpc.CatalogServiceAsyncStub) -> None:
    first = await stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=4))
    rest = await stub.ListProducts(
        catalog_pb2.ListProductsRequest(page_token=first.next_page_token)
    )
    ids = [p.product_id for p in [*first.products, *rest.products]]
    assert ids == sorted(p.product_id for p in DEMO_PRODUCTS)
    assert rest.next_page_token == ""
    got = await stub.GetProduct(catalog_pb2.GetProductRequest(product_id="sku-espresso"))
    espresso = next(p for p in DEMO_PRODUCTS if p.product_id == "sku-espresso")
    assert got.product == catalog_pb2.Product(
        product_id="sku-espresso",
        name=espresso.name,
        description=espresso.description,
        price_cents=espresso.price_cents,
        stock=espresso.stock,
    )


async def test_reserve_and_release_round_trip(
    stub: catalog_pb2_grpc.CatalogServiceAsyncStub,
) -> None:
    request = reserve("ord-1", ("sku-espresso", 2), ("sku-mug", 1))
    held = (await stub.ReserveStock(request)).reservation
    assert held.state == catalog_pb2.RESERVATION_STATE_HELD
    assert [(line.product_id, line.quantity, line.unit_price_cents) for line in held.lines] == [
        ("sku-espresso", 2, 2400),
        ("sku-mug", 1, 1200),
    ]
    assert (await stub.ReserveStock(request)).reservation == held
    product = catalog_pb2.GetProductRequest(product_id="sku-espresso")
    assert (await stub.GetProduct(product)).product.stock == 98
    release = catalog_pb2.ReleaseStockRequest(reservation_id="ord-1")
    released = (await stub.ReleaseStock(release)).reservation
    assert released.state == catalog_pb2.RESERVATION_STATE_RELEASED
    assert list(released.lines) == list(held.lines)
    assert (await stub.ReleaseStock(release)).reservation == released
    assert (await stub.GetProduct(product)).product.stock == 100
    unknown = catalog_pb2.ReleaseStockRequest(reservation_id="ord-unknown")
    nothing = (await stub.ReleaseStock(unknown)).reservation
    assert nothing == catalog_pb2.Reservation(
        reservation_id="ord-unknown", state=catalog_pb2.RESERVATION_STATE_RELEASED
    )


@pytest.mark.parametrize(
    ("method", "request_", "fields"),
    [
        ("ListProducts", catalog_pb2.ListProductsRequest(page_size=101), {"page_size"}),
        ("ListProducts", catalog_pb2.ListProductsRequest(page_size=-1), {"page_size"}),
        ("ListProducts", catalog_pb2.ListProductsRequest(page_token="%%%"), {"page_token"}),
        ("GetProduct", catalog_pb2.GetProductRequest(), {"product_id"}),
        ("ReserveStock", reserve("", ("sku-mug", 1)), {"reservation_id"}),
        ("ReserveStock", reserve("r"), {"lines"}),
        ("ReserveStock", reserve("r", ("", 1)), {"lines[0].product_id"}),
        ("ReserveStock", reserve("r", ("sku-mug", 1), ("sku-espresso", 0)), {"lines[1].quantity"}),
        ("ReserveStock", reserve("r", ("sku-mug", 1), ("sku-mug", 1)), {"lines[1].product_id"}),
        ("ReserveStock", reserve("r", ("sku-mug", 1), ("sku-unknown", 1)), {"lines[1].product_id"}),
        ("ReleaseStock", catalog_pb2.ReleaseStockRequest(), {"reservation_id"}),
    ],
)
async def test_bad_input_names_the_field(
    stub: catalog_pb2_grpc.CatalogServiceAsyncStub, method: str, request_: Message, fields: set[str]
) -> None:
    with pytest.raises(aio.AioRpcError) as error:
        await getattr(stub, method)(request_)
    assert set(field_violations(error.value)) == fields


async def test_status_codes_for_business_errors(
    stub: catalog_pb2_grpc.CatalogServiceAsyncStub,
) -> None:
    with pytest.raises(aio.AioRpcError) as missing:
        await stub.GetProduct(catalog_pb2.GetProductRequest(product_id="sku-nothing"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(missing.value) == "PRODUCT_NOT_FOUND"

    await stub.ReserveStock(reserve("ord-1", ("sku-limited-edition", 1)))
    with pytest.raises(aio.AioRpcError) as out:
        await stub.ReserveStock(reserve("ord-2", ("sku-mug", 1), ("sku-limited-edition", 1)))
    assert out.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(out.value) == "OUT_OF_STOCK"
    assert "sku-limited-edition" in (out.value.details() or "")
    mug = await stub.GetProduct(catalog_pb2.GetProductRequest(product_id="sku-mug"))
    assert mug.product.stock == 100

    with pytest.raises(aio.AioRpcError) as mismatch:
        await stub.ReserveStock(reserve("ord-1", ("sku-limited-edition", 1), ("sku-mug", 1)))
    assert mismatch.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(mismatch.value) == "RESERVATION_MISMATCH"

    await stub.ReleaseStock(catalog_pb2.ReleaseStockRequest(reservation_id="ord-late"))
    with pytest.raises(aio.AioRpcError) as late:
        await stub.ReserveStock(reserve("ord-late", ("sku-mug", 1)))
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(late.value) == "RESERVATION_RELEASED"
