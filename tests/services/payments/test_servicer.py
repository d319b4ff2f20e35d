"""The payments servicer over a real in-process gRPC server: encoding, errors, racing retries."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from grpc import aio

from services.payments.domain import Payments
from services.payments.servicer import PaymentServicer
from services.payments.store import SqlPaymentStore
from services.runtime.server import Service
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.services.conftest import Serve, error_reason, field_violations


def payments_service(path: str = ":memory:") -> Service:
    return Service(
        "shop.payments.v1.PaymentService",
        payments_pb2_grpc.add_PaymentServiceServicer_to_server,
        PaymentServicer(Payments(SqlPaymentStore(path))),
    )


def charge(
    key: str = "key-1", user_id: str = "usr_ann", amount: int = 4200, token: str = "tok_visa"
) -> payments_pb2.ChargePaymentRequest:
    return payments_pb2.ChargePaymentRequest(
        idempotency_key=key, user_id=user_id, amount_cents=amount, payment_token=token
    )


async def test_charge_get_refund(serve: Serve) -> None:
    async with serve([payments_service()]) as channel:
        stub = payments_pb2_grpc.PaymentServiceStub(channel)
        payment = (await stub.ChargePayment(charge())).payment
        assert payment.payment_id.startswith("pay_")
        assert (payment.idempotency_key, payment.user_id, payment.amount_cents) == (
            "key-1",
            "usr_ann",
            4200,
        )
        assert payment.state == payments_pb2.PAYMENT_STATE_CAPTURED
        assert payment.create_time.seconds > 0
        by_id = payments_pb2.GetPaymentRequest(payment_id=payment.payment_id)
        assert (await stub.GetPayment(by_id)).payment == payment
        refund = payments_pb2.RefundPaymentRequest(payment_id=payment.payment_id)
        refunded = (await stub.RefundPayment(refund)).payment
        assert refunded.state == payments_pb2.PAYMENT_STATE_REFUNDED
        assert (await stub.RefundPayment(refund)).payment == refunded
        assert (await stub.GetPayment(by_id)).payment == refunded


async def test_twenty_concurrent_charges_with_one_key_make_one_payment(
    serve: Serve, tmp_path: Path
) -> None:
    path = str(tmp_path / "payments.db")
    async with serve([payments_service(path)]) as channel:
        stub = payments_pb2_grpc.PaymentServiceStub(channel)
        responses = await asyncio.gather(*(stub.ChargePayment(charge()) for _ in range(20)))
    assert len({r.payment.payment_id for r in responses}) == 1
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM payments").fetchone() == (1,)


@pytest.mark.parametrize(
    ("method", "request_", "fields"),
    [
        ("ChargePayment", charge(key=""), {"idempotency_key"}),
        ("ChargePayment", charge(user_id=""), {"user_id"}),
        ("ChargePayment", charge(amount=0), {"amount_cents"}),
        ("ChargePayment", charge(token=""), {"payment_token"}),
        ("RefundPayment", payments_pb2.RefundPaymentRequest(), {"payment_id"}),
        ("GetPayment", payments_pb2.GetPaymentRequest(), {"payment_id"}),
    ],
)
async def test_bad_input_names_the_field(
    serve: Serve, method: str, request_: Message, fields: set[str]
) -> None:
    async with serve([payments_service()]) as channel:
        stub = payments_pb2_grpc.PaymentServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as error:
            await getattr(stub, method)(request_)
        assert set(field_violations(error.value)) == fields


async def test_status_codes_for_business_errors(serve: Serve) -> None:
    async with serve([payments_service()]) as channel:
        stub = payments_pb2_grpc.PaymentServiceStub(channel)
        for _ in range(2):
            with pytest.raises(aio.AioRpcError) as declined:
                await stub.ChargePayment(charge(key="key-d", token="tok_decline"))
            assert declined.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_reason(declined.value) == "CARD_DECLINED"

        payment = (await stub.ChargePayment(charge())).payment
        with pytest.raises(aio.AioRpcError) as reused:
            await stub.ChargePayment(charge(amount=1))
        assert reused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(reused.value) == "IDEMPOTENCY_KEY_REUSED"

        missing_id = "pay_nothing"
        with pytest.raises(aio.AioRpcError) as get_missing:
            await stub.GetPayment(payments_pb2.GetPaymentRequest(payment_id=missing_id))
        with pytest.raises(aio.AioRpcError) as refund_missing:
            await stub.RefundPayment(payments_pb2.RefundPaymentRequest(payment_id=missing_id))
        for missing in (get_missing.value, refund_missing.value):
            assert missing.code() == grpc.StatusCode.NOT_FOUND
            assert error_reason(missing) == "PAYMENT_NOT_FOUND"

        foreign = (("x-user-id", "usr_bob"),)
        with pytest.raises(aio.AioRpcError) as denied:
            await stub.GetPayment(
                payments_pb2.GetPaymentRequest(payment_id=payment.payment_id), metadata=foreign
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        own = (("x-user-id", "usr_ann"),)
        got = await stub.GetPayment(
            payments_pb2.GetPaymentRequest(payment_id=payment.payment_id), metadata=own
        )
        assert got.payment == payment
