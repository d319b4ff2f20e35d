"""gRPC adapters for orders v1 (integer cents) and v2 (Money and a shipping address)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.orders.domain import Address, Item, Order, Orders
from services.runtime import context
from services.runtime.convert import timestamp
from services.runtime.server import Context
from shop.orders.v1 import orders_pb2 as v1
from shop.orders.v1 import orders_pb2_grpc as v1_grpc
from shop.orders.v2 import orders_pb2 as v2
from shop.orders.v2 import orders_pb2_grpc as v2_grpc

CURRENCY = "USD"


def _items(items: object) -> list[Item]:
    return [Item(i.product_id, i.quantity) for i in items]  # type: ignore[attr-defined]


def _order_fields(order: Order) -> dict[str, Any]:
    """The fields both versions' Order messages carry under the same names and meaning; each
    version adds only how it writes amounts (and v2 the shipping address)."""
    return {
        "order_id": order.order_id,
        "user_id": order.user_id,
        "status": f"ORDER_STATUS_{order.status.value}",  # the same enum names in v1 and v2
        "status_reason": order.status_reason,
        "payment_id": order.payment_id,
        "create_time": timestamp(order.create_time),
        "update_time": timestamp(order.update_time),
    }


def encode_v1(order: Order) -> v1.Order:
    return v1.Order(
        **_order_fields(order),
        items=[
            v1.OrderItem(
                product_id=i.product_id, quantity=i.quantity, unit_price_cents=i.unit_price_cents
            )
            for i in order.items
        ],
        total_cents=order.total_cents,
    )


def money(cents: int) -> v2.Money:
    return v2.Money(currency_code=CURRENCY, units=cents // 100, nanos=(cents % 100) * 10_000_000)


def encode_v2(order: Order) -> v2.Order:
    address = order.shipping_address
    return v2.Order(
        **_order_fields(order),
        items=[
            v2.OrderItem(
                product_id=i.product_id, quantity=i.quantity, unit_price=money(i.unit_price_cents)
            )
            for i in order.items
        ],
        total=money(order.total_cents),
        shipping_address=v2.ShippingAddress(**vars(address)) if address else None,
    )


def decode_address(address: v2.ShippingAddress) -> Address:
    return Address(
        recipient=address.recipient,
        street=address.street,
        city=address.city,
        postal_code=address.postal_code,
        country_code=address.country_code,
    )


class OrderServicerV1(v1_grpc.OrderServiceServicer):
    def __init__(self, orders: Orders) -> None:
        self._orders = orders

    async def PlaceOrder(
        self, request: v1.PlaceOrderRequest, ctx: Context
    ) -> v1.PlaceOrderResponse:
        order = await self._orders.place(
            request.request_id,
            request.user_id,
            _items(request.items),
            request.payment_token,
            caller=context.caller.get(),
        )
        return v1.PlaceOrderResponse(order=encode_v1(order))

    async def GetOrder(self, request: v1.GetOrderRequest, ctx: Context) -> v1.GetOrderResponse:
        order = await self._orders.get(request.order_id, context.caller.get())
        return v1.GetOrderResponse(order=encode_v1(order))

    async def ListOrders(
        self, request: v1.ListOrdersRequest, ctx: Context
    ) -> v1.ListOrdersResponse:
        page = await self._orders.list(
            request.user_id, request.page_size, request.page_token, context.caller.get()
        )
        return v1.ListOrdersResponse(
            orders=[encode_v1(o) for o in page.orders], next_page_token=page.next_page_token
        )

    async def CancelOrder(
        self, request: v1.CancelOrderRequest, ctx: Context
    ) -> v1.CancelOrderResponse:
        order = await self._orders.cancel(request.order_id, request.reason, context.caller.get())
        return v1.CancelOrderResponse(order=encode_v1(order))

    async def WatchOrder(
        self, request: v1.WatchOrderRequest, ctx: Context
    ) -> AsyncIterator[v1.WatchOrderResponse]:
        async for order in self._orders.watch(request.order_id, context.caller.get()):
            yield v1.WatchOrderResponse(order=encode_v1(order))


class OrderServicerV2(v2_grpc.OrderServiceServicer):
    def __init__(self, orders: Orders) -> None:
        self._orders = orders

    async def PlaceOrder(
        self, request: v2.PlaceOrderRequest, ctx: Context
    ) -> v2.PlaceOrderResponse:
        order = await self._orders.place(
            request.request_id,
            request.user_id,
            _items(request.items),
            request.payment_token,
            shipping_address=decode_address(request.shipping_address),
            caller=context.caller.get(),
        )
        return v2.PlaceOrderResponse(order=encode_v2(order))

    async def GetOrder(self, request: v2.GetOrderRequest, ctx: Context) -> v2.GetOrderResponse:
        order = await self._orders.get(request.order_id, context.caller.get())
        return v2.GetOrderResponse(order=encode_v2(order))

    async def ListOrders(
        self, request: v2.ListOrdersRequest, ctx: Context
    ) -> v2.ListOrdersResponse:
        page = await self._orders.list(
            request.user_id, request.page_size, request.page_token, context.caller.get()
        )
        return v2.ListOrdersResponse(
            orders=[encode_v2(o) for o in page.orders], next_page_token=page.next_page_token
        )

    async def CancelOrder(
        self, request: v2.CancelOrderRequest, ctx: Context
    ) -> v2.CancelOrderResponse:
        order = await self._orders.cancel(request.order_id, request.reason, context.caller.get())
        return v2.CancelOrderResponse(order=encode_v2(order))

    async def WatchOrder(
        self, request: v2.WatchOrderRequest, ctx: Context
    ) -> AsyncIterator[v2.WatchOrderResponse]:
        async for order in self._orders.watch(request.order_id, context.caller.get()):
            yield v2.WatchOrderResponse(order=encode_v2(order))
