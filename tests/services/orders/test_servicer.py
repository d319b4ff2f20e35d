"""Orders over real in-process gRPC servers: the v1 and v2 APIs, streaming, errors and tracing.

The peers (users, catalog, payments) are the real servicers on their own in-process server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
from grpc import aio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.catalog.demo import DEMO_PRODUCTS
from services.catalog.domain import Catalog
from services.catalog.servicer import CatalogServicer
from services.catalog.store import SqlCatalogStore
from services.orders.clients import READ_METHODS, CatalogClient, PaymentsClient, UsersClient
from services.orders.domain import Orders, SagaOptions
from services.orders.servicer import OrderServicerV1, OrderServicerV2
from services.orders.store import SqlOrderStore
from services.payments.domain import Payments
from services.payments.servicer import PaymentServicer
from services.payments.store import SqlPaymentStore
from services.runtime.channels import open_channel
from services.runtime.server import Service, build_server
from services.runtime.telemetry import configure_tracing
from services.users.domain import Users
from services.users.servicer import UserServicer
from services.users.store import SqlUserStore
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.orders.v1 import orders_pb2 as v1
from shop.orders.v1 import orders_pb2_grpc as v1_grpc
from shop.orders.v2 import orders_pb2 as v2
from shop.orders.v2 import orders_pb2_grpc as v2_grpc
from shop.payments.v1 import payments_pb2_grpc
from shop.users.v1 import users_pb2, users_pb2_grpc
from tests.services.conftest import error_reason, field_violations, server_settings


@dataclass
class Shop:
    v1: v1_grpc.OrderServiceAsyncStub
    v2: v2_grpc.OrderServiceAsyncStub
    users: users_pb2_grpc.UserServiceAsyncStub
    catalog: catalog_pb2_grpc.CatalogServiceAsyncStub
    user_id: str


@asynccontextmanager
async def running_shop() -> AsyncIterator[Shop]:
    catalog = Catalog(SqlCatalogStore(":memory:"))
    await catalog.seed(DEMO_PRODUCTS)
    peers = await build_server(
        server_settings("peers"),
        [
            Service(
                "shop.users.v1.UserService",
                users_pb2_grpc.add_UserServiceServicer_to_server,
                UserServicer(Users(SqlUserStore(":memory:"))),
            ),
            Service(
                "shop.catalog.v1.CatalogService",
                catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
                CatalogServicer(catalog),
            ),
            Service(
                "shop.payments.v1.PaymentService",
                payments_pb2_grpc.add_PaymentServiceServicer_to_server,
                PaymentServicer(Payments(SqlPaymentStore(":memory:"))),
            ),
        ],
    )
    peer_channel = open_channel(
        f"127.0.0.1:{peers.port}", default_timeout=5, read_methods=READ_METHODS
    )
    orders = Orders(
        SqlOrderStore(":memory:"),
        UsersClient(peer_channel),
        CatalogClient(peer_channel),
        PaymentsClient(peer_channel),
        SagaOptions(watch_poll_seconds=0.05),
    )
    server = await build_server(
        server_settings("orders"),
        [
            Service(
                "shop.orders.v1.OrderService",
                v1_grpc.add_OrderServiceServicer_to_server,
                OrderServicerV1(orders),
            ),
            Service(
                "shop.orders.v2.OrderService",
                v2_grpc.add_OrderServiceServicer_to_server,
                OrderServicerV2(orders),
            ),
        ],
    )
    try:
        async with (
            aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
            aio.insecure_channel(f"127.0.0.1:{peers.port}") as direct,
        ):
            users = users_pb2_grpc.UserServiceStub(direct)
            ann = await users.CreateUser(
                users_pb2.CreateUserRequest(email="ann@example.com", display_name="Ann")
            )
            yield Shop(
                v1_grpc.OrderServiceStub(channel),
                v2_grpc.OrderServiceStub(channel),
                users,
                catalog_pb2_grpc.CatalogServiceStub(direct),
                ann.user.user_id,
            )
    finally:
        await server.stop(0)
        await peer_channel.close()
        await peers.stop(0)


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    async with running_shop() as running:
        yield running


def place_v1(shop: Shop, **changes: object) -> v1.PlaceOrderRequest:
    fields: dict[str, object] = {
        "request_id": "req-1",
        "user_id": shop.user_id,
        "items": [v1.OrderItem(product_id="sku-espresso", quantity=2)],
        "payment_token": "tok_visa",
        **changes,
    }
    return v1.PlaceOrderRequest(**fields)  # type: ignore[arg-type]


ADDRESS = v2.ShippingAddress(
    recipient="Ann", street="Main St 1", city="Berlin", postal_code="10115", country_code="DE"
)


async def test_v1_place_get_list_watch_cancel(shop: Shop) -> None:
    placed = (await shop.v1.PlaceOrder(place_v1(shop))).order
    assert placed.status == v1.ORDER_STATUS_CONFIRMED
    assert placed.total_cents == 2 * placed.items[0].unit_price_cents > 0
    assert (await shop.v1.GetOrder(v1.GetOrderRequest(order_id=placed.order_id))).order == placed
    listed = await shop.v1.ListOrders(v1.ListOrdersRequest(user_id=shop.user_id))
    assert [o.order_id for o in listed.orders] == [placed.order_id]
    watched = [
        r.order.status
        async for r in shop.v1.WatchOrder(v1.WatchOrderRequest(order_id=placed.order_id))
    ]
    assert watched == [v1.ORDER_STATUS_CONFIRMED]
    cancelled = (await shop.v1.CancelOrder(v1.CancelOrderRequest(order_id=placed.order_id))).order
    assert cancelled.status == v1.ORDER_STATUS_CANCELLED


async def test_v2_carries_money_and_address_and_reads_v1_orders(shop: Shop) -> None:
    request = v2.PlaceOrderRequest(
        request_id="req-v2",
        user_id=shop.user_id,
        payment_token="tok_visa",
        items=[v2.OrderItem(product_id="sku-espresso", quantity=1)],
        shipping_address=ADDRESS,
    )
    placed = (await shop.v2.PlaceOrder(request)).order
    assert placed.total.currency_code == "USD"
    assert placed.total.units * 100 + placed.total.nanos // 10_000_000 > 0
    assert placed.shipping_address == ADDRESS
    from_v1 = (await shop.v1.PlaceOrder(place_v1(shop, request_id="req-v1"))).order
    seen_by_v2 = (await shop.v2.GetOrder(v2.GetOrderRequest(order_id=from_v1.order_id))).order
    assert (
        seen_by_v2.total.units * 100 + seen_by_v2.total.nanos // 10_000_000 == from_v1.total_cents
    )
    assert not seen_by_v2.HasField("shipping_address")


async def test_declined_payment_returns_a_cancelled_order(shop: Shop) -> None:
    stock = (
        await shop.catalog.GetProduct(catalog_pb2.GetProductRequest(product_id="sku-espresso"))
    ).product.stock
    order = (await shop.v1.PlaceOrder(place_v1(shop, payment_token="tok_decline"))).order
    assert order.status == v1.ORDER_STATUS_CANCELLED
    assert "declined" in order.status_reason
    after = (
        await shop.catalog.GetProduct(catalog_pb2.GetProductRequest(product_id="sku-espresso"))
    ).product.stock
    assert after == stock


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"request_id": ""}, {"request_id"}),
        ({"user_id": "usr_nobody"}, {"user_id"}),
        ({"items": []}, {"items"}),
        ({"items": [v1.OrderItem(product_id="sku-espresso", quantity=0)]}, {"items[0].quantity"}),
        ({"items": [v1.OrderItem(product_id="sku-nope", quantity=1)]}, {"items[0].product_id"}),
        ({"payment_token": ""}, {"payment_token"}),
    ],
)
async def test_place_bad_input_names_the_field(
    shop: Shop, changes: dict[str, object], fields: set[str]
) -> None:
    with pytest.raises(aio.AioRpcError) as error:
        await shop.v1.PlaceOrder(place_v1(shop, **changes))
    assert set(field_violations(error.value)) == fields


async def test_v2_place_requires_a_shipping_address(shop: Shop) -> None:
    request = v2.PlaceOrderRequest(
        request_id="req-v2",
        user_id=shop.user_id,
        payment_token="tok_visa",
        items=[v2.OrderItem(product_id="sku-espresso", quantity=1)],
    )
    with pytest.raises(aio.AioRpcError) as error:
        await shop.v2.PlaceOrder(request)
    assert set(field_violations(error.value)) == {
        "shipping_address.recipient",
        "shipping_address.street",
        "shipping_address.city",
        "shipping_address.postal_code",
        "shipping_address.country_code",
    }


async def test_read_rpcs_reject_bad_input(shop: Shop) -> None:
    with pytest.raises(aio.AioRpcError) as get:
        await shop.v1.GetOrder(v1.GetOrderRequest(order_id=""))
    assert set(field_violations(get.value)) == {"order_id"}
    with pytest.raises(aio.AioRpcError) as listing:
        await shop.v1.ListOrders(v1.ListOrdersRequest(user_id="", page_size=1000, page_token="%%"))
    assert set(field_violations(listing.value)) == {"user_id", "page_size", "page_token"}
    with pytest.raises(aio.AioRpcError) as cancel:
        await shop.v1.CancelOrder(v1.CancelOrderRequest(order_id=""))
    assert set(field_violations(cancel.value)) == {"order_id"}
    with pytest.raises(aio.AioRpcError) as watch:
        async for _ in shop.v1.WatchOrder(v1.WatchOrderRequest(order_id="")):
            pass
    assert set(field_violations(watch.value)) == {"order_id"}


async def test_business_errors_have_codes_and_reasons(shop: Shop) -> None:
    order = (await shop.v1.PlaceOrder(place_v1(shop))).order
    with pytest.raises(aio.AioRpcError) as missing:
        await shop.v1.GetOrder(v1.GetOrderRequest(order_id="ord_missing"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(aio.AioRpcError) as foreign:
        await shop.v1.GetOrder(
            v1.GetOrderRequest(order_id=order.order_id), metadata=(("x-user-id", "usr_other"),)
        )
    assert foreign.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(aio.AioRpcError) as reused:
        await shop.v1.PlaceOrder(
            place_v1(shop, items=[v1.OrderItem(product_id="sku-mug", quantity=1)])
        )
    assert reused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(reused.value) == "REQUEST_ID_REUSED"


async def test_one_trace_covers_the_whole_saga() -> None:
    configure_tracing("test", "v1", "")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with running_shop() as shop:
            exporter.clear()
            await shop.v1.PlaceOrder(place_v1(shop))
        spans = exporter.get_finished_spans()
    finally:
        exporter.shutdown()
    place = next(
        s
        for s in spans
        if s.name == "/shop.orders.v1.OrderService/PlaceOrder" and s.kind.name == "SERVER"
    )
    trace_id = place.context.trace_id
    servers = {
        s.name.split("/")[1]
        for s in spans
        if s.kind.name == "SERVER" and s.context.trace_id == trace_id
    }
    assert servers == {
        "shop.orders.v1.OrderService",
        "shop.users.v1.UserService",
        "shop.catalog.v1.CatalogService",
        "shop.payments.v1.PaymentService",
    }
