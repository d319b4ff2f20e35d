"""Payments' outbox: a capture and a refund each commit exactly one event with the change."""

from __future__ import annotations

import pytest

from contracts.schemas import decode, default_registry
from services.payments.domain import Payments
from services.payments.store import SqlPaymentStore
from services.runtime.errors import FailedPrecondition
from tests.services.conftest import Opened


@pytest.fixture
def store(database: str, opened: Opened) -> SqlPaymentStore:
    return opened(SqlPaymentStore(database))


def published(store: SqlPaymentStore) -> list[tuple[str, dict[str, object]]]:
    registry = default_registry()
    return [
        (e.subject, decode(registry, e.payload, registry.subject(e.subject).latest))
        for e in store.outbox.after(0, 100)
    ]


def test_a_capture_is_announced_once_per_key(store: SqlPaymentStore) -> None:
    payments = Payments(store)
    payment = payments.charge("ord_1", "usr_ann", 1200, "tok_visa")
    payments.charge("ord_1", "usr_ann", 1200, "tok_visa")
    ((subject, record),) = published(store)
    assert subject == "shop.payments.PaymentCaptured"
    assert record["payment_id"] == payment.payment_id
    assert record["idempotency_key"] == "ord_1"
    assert record["amount_cents"] == 1200


def test_a_decline_announces_nothing(store: SqlPaymentStore) -> None:
    with pytest.raises(FailedPrecondition):
        Payments(store).charge("ord_1", "usr_ann", 1200, "tok_decline")
    assert published(store) == []


def test_a_refund_is_announced_once(store: SqlPaymentStore) -> None:
    payments = Payments(store)
    payment = payments.charge("ord_1", "usr_ann", 1200, "tok_visa")
    payments.refund(payment.payment_id)
    payments.refund(payment.payment_id)
    subjects = [subject for subject, _ in published(store)]
    assert subjects == ["shop.payments.PaymentCaptured", "shop.payments.PaymentRefunded"]
    assert published(store)[1][1]["amount_cents"] == 1200
