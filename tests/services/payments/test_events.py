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


async def published(store: SqlPaymentStore) -> list[tuple[str, dict[str, object]]]:
    registry = default_registry()
    return [
        (e.subject, decode(registry, e.payload, registry.subject(e.subject).latest))
        for e in await store.outbox.after(0, 100)
    ]


async def test_a_capture_is_announced_once_per_key(store: SqlPaymentStore) -> None:
    payments = Payments(store)
    payment = await payments.charge("ord_1", "usr_ann", 1200, "tok_visa")
    await payments.charge("ord_1", "usr_ann", 1200, "tok_visa")
    ((subject, record),) = await published(store)
    assert subject == "shop.payments.PaymentCaptured"
    assert record["payment_id"] == payment.payment_id
    assert record["idempotency_key"] == "ord_1"
    assert record["amount_cents"] == 1200


async def test_a_decline_announces_nothing(store: SqlPaymentStore) -> None:
    with pytest.raises(FailedPrecondition):
        await Payments(store).charge("ord_1", "usr_ann", 1200, "tok_decline")
    assert await published(store) == []


async def test_a_refund_is_announced_once(store: SqlPaymentStore) -> None:
    payments = Payments(store)
    payment = await payments.charge("ord_1", "usr_ann", 1200, "tok_visa")
    await payments.refund(payment.payment_id)
    await payments.refund(payment.payment_id)
    subjects = [subject for subject, _ in await published(store)]
    assert subjects == ["shop.payments.PaymentCaptured", "shop.payments.PaymentRefunded"]
    assert (await published(store))[1][1]["amount_cents"] == 1200
