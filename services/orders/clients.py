"""gRPC adapters for the peers orders calls, turning their statuses into saga outcomes."""

from __future__ import annotations

import grpc
from grpc import aio

from services.orders.domain import Item, StepFailed, StepInterrupted
from services.runtime.errors import Unavailable
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from shop.users.v1 import users_pb2, users_pb2_grpc

# A peer that answered with one of these refused the step for good; any other status (UNAVAILABLE,
# DEADLINE_EXCEEDED, INTERNAL, ...) leaves the outcome unknown, so the step is retried later.
REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

# Reads that are safe to retry on UNAVAILABLE through the channel's service config.
READ_METHODS = (
    "/shop.users.v1.UserService/GetUser",
    "/shop.catalog.v1.CatalogService/GetProduct",
    "/shop.payments.v1.PaymentService/GetPayment",
)


def _outcome(step: str, error: aio.AioRpcError) -> Exception:
    if error.code() in REFUSALS:
        return StepFailed(f"{step} failed: {error.details()}")
    return StepInterrupted(f"{step}: {error.code().name} {error.details()}")


def _unavailable(peer: str, error: aio.AioRpcError) -> Unavailable:
    return Unavailable(
        f"{peer} could not answer: {error.code().name}", reason=f"{peer.upper()}_UNAVAILABLE"
    )


class UsersClient:
    def __init__(self, channel: aio.Channel) -> None:
        self._stub = users_pb2_grpc.UserServiceStub(channel)

    async def exists(self, user_id: str) -> bool:
        try:
            await self._stub.GetUser(users_pb2.GetUserRequest(user_id=user_id))
        except aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise _unavailable("users", error) from error
        return True


class CatalogClient:
    def __init__(self, channel: aio.Channel) -> None:
        self._stub = catalog_pb2_grpc.CatalogServiceStub(channel)

    async def product_exists(self, product_id: str) -> bool:
        try:
            await self._stub.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id))
        except aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise _unavailable("catalog", error) from error
        return True

    async def reserve(self, reservation_id: str, items: tuple[Item, ...]) -> tuple[Item, ...]:
        request = catalog_pb2.ReserveStockRequest(
            reservation_id=reservation_id,
            lines=[
                catalog_pb2.ReservationLine(product_id=i.product_id, quantity=i.quantity)
                for i in items
            ],
        )
        try:
            response = await self._stub.ReserveStock(request)
        except aio.AioRpcError as error:
            raise _outcome("stock reservation", error) from error
        return tuple(
            Item(line.product_id, line.quantity, line.unit_price_cents)
            for line in response.reservation.lines
        )

    async def release(self, reservation_id: str) -> None:
        try:
            await self._stub.ReleaseStock(
                catalog_pb2.ReleaseStockRequest(reservation_id=reservation_id)
            )
        except aio.AioRpcError as error:
            raise StepInterrupted(f"stock release: {error.code().name}") from error


class PaymentsClient:
    def __init__(self, channel: aio.Channel) -> None:
        self._stub = payments_pb2_grpc.PaymentServiceStub(channel)

    async def charge(self, key: str, user_id: str, amount_cents: int, token: str) -> str:
        request = payments_pb2.ChargePaymentRequest(
            idempotency_key=key, user_id=user_id, amount_cents=amount_cents, payment_token=token
        )
        try:
            response = await self._stub.ChargePayment(request)
        except aio.AioRpcError as error:
            raise _outcome("payment", error) from error
        return str(response.payment.payment_id)

    async def refund(self, payment_id: str) -> None:
        try:
            await self._stub.RefundPayment(payments_pb2.RefundPaymentRequest(payment_id=payment_id))
        except aio.AioRpcError as error:
            raise StepInterrupted(f"refund: {error.code().name}") from error
