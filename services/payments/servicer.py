"""gRPC adapter for payments: decode the request, call the domain, encode the result."""

from __future__ import annotations

from services.payments.domain import Payment, Payments, PaymentState
from services.runtime import context
from services.runtime.convert import timestamp
from services.runtime.server import Context
from shop.payments.v1 import payments_pb2, payments_pb2_grpc

# Declined attempts are never returned as payments, so they have no wire state.
STATES = {
    PaymentState.CAPTURED: payments_pb2.PAYMENT_STATE_CAPTURED,
    PaymentState.REFUNDED: payments_pb2.PAYMENT_STATE_REFUNDED,
}


def encode(payment: Payment) -> payments_pb2.Payment:
    return payments_pb2.Payment(
        payment_id=payment.payment_id,
        idempotency_key=payment.idempotency_key,
        user_id=payment.user_id,
        amount_cents=payment.amount_cents,
        state=STATES[payment.state],
        create_time=timestamp(payment.create_time),
    )


class PaymentServicer(payments_pb2_grpc.PaymentServiceServicer):
    def __init__(self, payments: Payments) -> None:
        self._payments = payments

    async def ChargePayment(
        self, request: payments_pb2.ChargePaymentRequest, ctx: Context
    ) -> payments_pb2.ChargePaymentResponse:
        payment = await self._payments.charge(
            request.idempotency_key,
            request.user_id,
            request.amount_cents,
            request.payment_token,
            context.caller.get(),
        )
        return payments_pb2.ChargePaymentResponse(payment=encode(payment))

    async def RefundPayment(
        self, request: payments_pb2.RefundPaymentRequest, ctx: Context
    ) -> payments_pb2.RefundPaymentResponse:
        payment = await self._payments.refund(request.payment_id, context.caller.get())
        return payments_pb2.RefundPaymentResponse(payment=encode(payment))

    async def GetPayment(
        self, request: payments_pb2.GetPaymentRequest, ctx: Context
    ) -> payments_pb2.GetPaymentResponse:
        payment = await self._payments.get(request.payment_id, context.caller.get())
        return payments_pb2.GetPaymentResponse(payment=encode(payment))
