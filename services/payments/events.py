"""The events payments announces, as records of the newest Avro schemas; the store commits each
with the change it announces (the outbox)."""

from __future__ import annotations

from datetime import datetime

from services.payments.domain import Payment
from services.runtime.outbox import NewEvent

CAPTURED = "shop.payments.PaymentCaptured"
REFUNDED = "shop.payments.PaymentRefunded"
SUBJECTS = (CAPTURED, REFUNDED)


def captured(payment: Payment) -> NewEvent:
    record = {
        "payment_id": payment.payment_id,
        "idempotency_key": payment.idempotency_key,
        "user_id": payment.user_id,
        "amount_cents": payment.amount_cents,
        "occurred_at": payment.create_time,
    }
    return NewEvent(CAPTURED, payment.payment_id, record)


def refunded(payment: Payment, when: datetime) -> NewEvent:
    record = {
        "payment_id": payment.payment_id,
        "user_id": payment.user_id,
        "amount_cents": payment.amount_cents,
        "occurred_at": when,
    }
    return NewEvent(REFUNDED, payment.payment_id, record)
