"""orders' pacts with users, catalog and payments: the saga's real clients
(`services/orders/clients.py`) against a server that answers only from the contract.

Each test records one unary call as a V4 synchronous message (proto3 JSON plus orders' own
descriptors) and runs the client against `ContractServer`; `test_orders_providers.py`
replays the pacts against the real services.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from grpc import aio
from pact import Pact, match

from contracts.pact import proto3
from contracts.pact.grpc import ContractServer, GrpcError, unary
from services.orders.clients import CatalogClient, PaymentsClient, UsersClient
from services.orders.domain import Item, StepFailed
from shop.catalog.v1 import catalog_pb2
from shop.payments.v1 import payments_pb2
from shop.users.v1 import users_pb2

pytestmark = pytest.mark.pact_consumer

CONSUMER = "orders"
NewPact = Callable[[str, str], Pact]
USER = "usr_0001"


class Contract:
    """One pact, its contract-driven server and a channel to it, for `async with`."""

    def __init__(self, pact: Pact) -> None:
        self.pact = pact
        self._server = ContractServer(pact)
        self._channel: aio.Channel | None = None

    async def __aenter__(self) -> aio.Channel:
        await self._server.__aenter__()
        self._channel = aio.insecure_channel(self._server.address)
        return self._channel

    async def __aexit__(self, *exc_info: object) -> None:
        if self._channel is not None:
            await self._channel.close()
        await self._server.__aexit__(None, None, None)
        if exc_info[0] is None:
            self._server.check()


async def test_users_get_user_known(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "users")
    unary(
        pact,
        "GetUser for a registered user",
        states=[("a user is registered", {})],
        method="/shop.users.v1.UserService/GetUser",
        request=users_pb2.GetUserRequest(user_id=USER),
        from_state={"userId": "${userId}"},
        response={"user": {"userId": match.str(USER)}},
    )
    async with Contract(pact) as channel:
        assert await UsersClient(channel).exists(USER) is True


async def test_users_get_user_unknown(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "users")
    unary(
        pact,
        "GetUser for an unknown user",
        method="/shop.users.v1.UserService/GetUser",
        request=users_pb2.GetUserRequest(user_id="usr_unknown"),
        error=GrpcError(grpc.StatusCode.NOT_FOUND, "user 'usr_unknown' not found"),
    )
    async with Contract(pact) as channel:
        assert await UsersClient(channel).exists("usr_unknown") is False


async def test_catalog_get_product(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "catalog")
    unary(
        pact,
        "GetProduct for a product in the catalog",
        states=[("the demo catalog is loaded", {})],
        method="/shop.catalog.v1.CatalogService/GetProduct",
        request=catalog_pb2.GetProductRequest(product_id="sku-espresso"),
        response={"product": {"productId": "sku-espresso"}},
    )
    async with Contract(pact) as channel:
        assert await CatalogClient(channel).product_exists("sku-espresso") is True


async def test_catalog_get_product_unknown(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "catalog")
    unary(
        pact,
        "GetProduct for an unknown product",
        method="/shop.catalog.v1.CatalogService/GetProduct",
        request=catalog_pb2.GetProductRequest(product_id="sku-unknown"),
        error=GrpcError(grpc.StatusCode.NOT_FOUND, "product 'sku-unknown' not found"),
    )
    async with Contract(pact) as channel:
        assert await CatalogClient(channel).product_exists("sku-unknown") is False


async def test_catalog_reserve_stock(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "catalog")
    unary(
        pact,
        "ReserveStock for products in stock",
        states=[("the demo catalog is loaded", {})],
        method="/shop.catalog.v1.CatalogService/ReserveStock",
        request=catalog_pb2.ReserveStockRequest(
            reservation_id="ord_0001",
            lines=[catalog_pb2.ReservationLine(product_id="sku-espresso", quantity=2)],
        ),
        response={
            "reservation": {
                "lines": match.each_like(
                    {
                        "productId": match.str("sku-espresso"),
                        "quantity": match.int(2),
                        "unitPriceCents": proto3.int64(1800),
                    }
                )
            }
        },
    )
    async with Contract(pact) as channel:
        reserved = await CatalogClient(channel).reserve("ord_0001", (Item("sku-espresso", 2),))
    assert reserved == (Item("sku-espresso", 2, 1800),)


async def test_catalog_reserve_stock_out_of_stock(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "catalog")
    unary(
        pact,
        "ReserveStock for more than is in stock",
        states=[("the demo catalog is loaded", {})],
        method="/shop.catalog.v1.CatalogService/ReserveStock",
        request=catalog_pb2.ReserveStockRequest(
            reservation_id="ord_0002",
            lines=[catalog_pb2.ReservationLine(product_id="sku-espresso", quantity=100000)],
        ),
        error=GrpcError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "not enough stock for sku-espresso",
            reason="OUT_OF_STOCK",
        ),
    )
    async with Contract(pact) as channel:
        with pytest.raises(StepFailed, match="not enough stock"):
            await CatalogClient(channel).reserve("ord_0002", (Item("sku-espresso", 100000),))


async def test_catalog_release_stock(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "catalog")
    unary(
        pact,
        "ReleaseStock for a reservation",
        method="/shop.catalog.v1.CatalogService/ReleaseStock",
        request=catalog_pb2.ReleaseStockRequest(reservation_id="ord_0003"),
        response={},
    )
    async with Contract(pact) as channel:
        await CatalogClient(channel).release("ord_0003")


async def test_payments_charge(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "payments")
    unary(
        pact,
        "ChargePayment with a valid card",
        method="/shop.payments.v1.PaymentService/ChargePayment",
        request=payments_pb2.ChargePaymentRequest(
            idempotency_key="ord_0001", user_id=USER, amount_cents=3600, payment_token="tok_visa"
        ),
        response={"payment": {"paymentId": match.str("pay_0001")}},
    )
    async with Contract(pact) as channel:
        payment = await PaymentsClient(channel).charge("ord_0001", USER, 3600, "tok_visa")
    assert payment == "pay_0001"


async def test_payments_charge_declined(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "payments")
    unary(
        pact,
        "ChargePayment with a card that is declined",
        method="/shop.payments.v1.PaymentService/ChargePayment",
        request=payments_pb2.ChargePaymentRequest(
            idempotency_key="ord_0002",
            user_id=USER,
            amount_cents=3600,
            payment_token="tok_decline",
        ),
        error=GrpcError(
            grpc.StatusCode.FAILED_PRECONDITION, "the card was declined", reason="CARD_DECLINED"
        ),
    )
    async with Contract(pact) as channel:
        with pytest.raises(StepFailed, match="declined"):
            await PaymentsClient(channel).charge("ord_0002", USER, 3600, "tok_decline")


async def test_payments_refund(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, "payments")
    unary(
        pact,
        "RefundPayment for a captured payment",
        states=[("a payment is captured", {})],
        method="/shop.payments.v1.PaymentService/RefundPayment",
        request=payments_pb2.RefundPaymentRequest(payment_id="pay_0001"),
        from_state={"paymentId": "${paymentId}"},
        response={"payment": {"paymentId": match.str("pay_0001")}},
    )
    async with Contract(pact) as channel:
        await PaymentsClient(channel).refund("pay_0001")
