"""Payment rules against the real store on each backend: charge once per key, refund once."""

from __future__ import annotations

import asyncio

import pytest

from services.payments.domain import DECLINE_TOKEN, Payment, Payments, PaymentState
from services.payments.store import SqlPaymentStore
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from tests.services.conftest import Opened, count_rows


@pytest.fixture
def payments(database: str, opened: Opened) -> Payments:
    return Payments(opened(SqlPaymentStore(database)))


def fields(error: InvalidArgument) -> set[str]:
    return {v.field for v in error.violations}


async def test_charge_captures_and_reads_back(payments: Payments) -> None:
    payment = await payments.charge("key-1", "usr_ann", 4200, "tok_visa")
    assert payment.payment_id.startswith("pay_")
    assert (payment.idempotency_key, payment.user_id, payment.amount_cents, payment.state) == (
        "key-1",
        "usr_ann",
        4200,
        PaymentState.CAPTURED,
    )
    assert await payments.get(payment.payment_id) == payment


async def test_same_key_returns_the_first_payment(payments: Payments) -> None:
    first = await payments.charge("key-1", "usr_ann", 4200, "tok_visa")
    assert await payments.charge("key-1", "usr_ann", 4200, "tok_visa") == first
    assert await payments.charge("key-2", "usr_ann", 4200, "tok_visa") != first


@pytest.mark.parametrize(("user_id", "amount"), [("usr_bob", 4200), ("usr_ann", 4201)])
async def test_same_key_for_another_charge_is_refused(
    payments: Payments, user_id: str, amount: int
) -> None:
    await payments.charge("key-1", "usr_ann", 4200, "tok_visa")
    with pytest.raises(FailedPrecondition) as error:
        await payments.charge("key-1", user_id, amount, "tok_visa")
    assert error.value.reason == "IDEMPOTENCY_KEY_REUSED"


async def test_decline_is_deterministic_and_remembered(payments: Payments) -> None:
    for token in (DECLINE_TOKEN, DECLINE_TOKEN, "tok_visa"):
        with pytest.raises(FailedPrecondition) as error:
            await payments.charge("key-1", "usr_ann", 4200, token)
        assert error.value.reason == "CARD_DECLINED"
    assert (
        await payments.charge("key-2", "usr_ann", 4200, "tok_visa")
    ).state is PaymentState.CAPTURED


async def test_refund_once(payments: Payments) -> None:
    payment = await payments.charge("key-1", "usr_ann", 4200, "tok_visa")
    refunded = await payments.refund(payment.payment_id)
    assert refunded.state is PaymentState.REFUNDED
    assert await payments.refund(payment.payment_id) == refunded
    assert await payments.get(payment.payment_id) == refunded
    # A retried charge after the refund reports what happened; it does not charge again.
    assert await payments.charge("key-1", "usr_ann", 4200, "tok_visa") == refunded


async def test_unknown_and_foreign_payments(payments: Payments) -> None:
    payment = await payments.charge("key-1", "usr_ann", 4200, "tok_visa")
    for call in (payments.get, payments.refund):
        with pytest.raises(NotFound) as missing:
            await call("pay_missing")
        assert missing.value.reason == "PAYMENT_NOT_FOUND"
        with pytest.raises(PermissionDenied):
            await call(payment.payment_id, "usr_bob")
    assert await payments.get(payment.payment_id, "usr_ann") == payment
    with pytest.raises(PermissionDenied):
        await payments.charge("key-2", "usr_ann", 100, "tok_visa", caller="usr_bob")
    assert (await payments.get(payment.payment_id)).state is PaymentState.CAPTURED


async def test_declined_attempts_are_not_payments(database: str, opened: Opened) -> None:
    payments = Payments(opened(SqlPaymentStore(database)), new_id=lambda: "pay_declined")
    with pytest.raises(FailedPrecondition):
        await payments.charge("key-1", "usr_ann", 4200, DECLINE_TOKEN)
    with pytest.raises(NotFound):
        await payments.get("pay_declined")
    with pytest.raises(NotFound):
        await payments.refund("pay_declined")


@pytest.mark.parametrize(
    ("key", "user", "amount", "token", "bad"),
    [
        ("", "usr_ann", 1, "tok", {"idempotency_key"}),
        ("k", "", 1, "tok", {"user_id"}),
        ("k", "usr_ann", 0, "tok", {"amount_cents"}),
        ("k", "usr_ann", -5, "tok", {"amount_cents"}),
        ("k", "usr_ann", 1, "", {"payment_token"}),
        ("", "", 0, "", {"idempotency_key", "user_id", "amount_cents", "payment_token"}),
    ],
)
async def test_charge_names_every_bad_field(
    payments: Payments, key: str, user: str, amount: int, token: str, bad: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as error:
        await payments.charge(key, user, amount, token)
    assert fields(error.value) == bad


async def test_refund_and_get_require_an_id(payments: Payments) -> None:
    for call in (payments.get, payments.refund):
        with pytest.raises(InvalidArgument) as error:
            await call("")
        assert fields(error.value) == {"payment_id"}


async def test_racing_charges_on_separate_connections_make_one_row(
    database: str, opened: Opened
) -> None:
    # Each worker has its own connection, as separate processes would: only the UNIQUE key
    # can keep them from charging twice.
    stores = [opened(SqlPaymentStore(database)) for _ in range(20)]

    async def charge(store: SqlPaymentStore) -> Payment:
        return await Payments(store).charge("key-1", "usr_ann", 4200, "tok_visa")

    results = await asyncio.gather(*(charge(store) for store in stores))
    assert len({p.payment_id for p in results}) == 1
    assert await count_rows(database, "payments") == 1
    assert await count_rows(database, "outbox") == 1


async def test_data_survives_reopening(database: str, opened: Opened) -> None:
    payment = await Payments(opened(SqlPaymentStore(database))).charge(
        "key-1", "usr_ann", 4200, "tok_visa"
    )
    again = Payments(opened(SqlPaymentStore(database)))
    assert await again.get(payment.payment_id) == payment
    assert await again.charge("key-1", "usr_ann", 4200, "tok_visa") == payment
    await again.refund(payment.payment_id)
    reopened = await Payments(opened(SqlPaymentStore(database))).get(payment.payment_id)
    assert reopened.state is PaymentState.REFUNDED


async def test_racing_refunds_refund_once(database: str, opened: Opened) -> None:
    stores = [opened(SqlPaymentStore(database)) for _ in range(8)]
    payment = await Payments(stores[0]).charge("key-1", "usr_ann", 4200, "tok_visa")
    await asyncio.gather(*(Payments(store).refund(payment.payment_id) for store in stores))
    subjects = [e.subject for e in await stores[0].outbox.after(0, 100)]
    assert subjects == ["shop.payments.PaymentCaptured", "shop.payments.PaymentRefunded"]
