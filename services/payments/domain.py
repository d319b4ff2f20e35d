"""Payments: charges made at most once per idempotency key, and refunds, free of gRPC."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, TypeVar

from services.runtime.clock import utc_now
from services.runtime.errors import FailedPrecondition, NotFound, Violations
from services.runtime.identity import ensure_owner

# The card token that is always declined, so demos and tests can show compensation.
DECLINE_TOKEN = "tok_decline"


class PaymentState(enum.StrEnum):
    CAPTURED = "CAPTURED"
    REFUNDED = "REFUNDED"
    # A declined attempt is kept so a retry with its key is declined again; callers never see it
    # as a payment.
    DECLINED = "DECLINED"


@dataclass(frozen=True)
class Payment:
    payment_id: str
    idempotency_key: str
    user_id: str
    amount_cents: int
    state: PaymentState
    create_time: datetime


T = TypeVar("T")


class PaymentStore(Protocol):
    async def transaction(self, body: Callable[[], Awaitable[T]]) -> T:
        """`await body()` atomically: all of its reads and writes or none. It awaits nothing
        but the store."""

    async def add_once(self, payment: Payment) -> Payment:
        """Insert `payment` unless its idempotency key is taken; return the key's payment."""

    async def get(self, payment_id: str) -> Payment | None: ...

    async def set_state(self, payment_id: str, state: PaymentState) -> None:
        """Change a payment's state inside `transaction()`, with the event announcing it."""


class Payments:
    def __init__(
        self,
        store: PaymentStore,
        new_id: Callable[[], str] = lambda: f"pay_{uuid.uuid4().hex[:12]}",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._new_id = new_id
        self._clock = clock

    async def charge(
        self,
        idempotency_key: str,
        user_id: str,
        amount_cents: int,
        payment_token: str,
        caller: str | None = None,
    ) -> Payment:
        """Capture `amount_cents` once per key: a repeated key returns the first outcome."""
        violations = Violations()
        violations.check(bool(idempotency_key), "idempotency_key", "must not be empty")
        violations.check(bool(user_id), "user_id", "must not be empty")
        violations.check(amount_cents >= 1, "amount_cents", "must be at least 1")
        violations.check(bool(payment_token), "payment_token", "must not be empty")
        violations.raise_if_any()
        ensure_owner(caller, user_id)
        state = PaymentState.DECLINED if payment_token == DECLINE_TOKEN else PaymentState.CAPTURED
        attempt = Payment(
            self._new_id(), idempotency_key, user_id, amount_cents, state, self._clock()
        )
        payment = await self._store.add_once(attempt)
        if (payment.user_id, payment.amount_cents) != (user_id, amount_cents):
            raise FailedPrecondition(
                f"idempotency key {idempotency_key!r} was used for a different charge",
                reason="IDEMPOTENCY_KEY_REUSED",
            )
        if payment.state is PaymentState.DECLINED:
            raise FailedPrecondition("the card was declined", reason="CARD_DECLINED")
        return payment

    async def refund(self, payment_id: str, caller: str | None = None) -> Payment:
        """Give a captured payment back in full; refunding again returns the refunded payment."""
        self._check_id(payment_id)

        async def give_back() -> Payment:
            payment = await self._find(payment_id, caller)
            if payment.state is PaymentState.REFUNDED:
                return payment
            await self._store.set_state(payment_id, PaymentState.REFUNDED)
            return replace(payment, state=PaymentState.REFUNDED)

        return await self._store.transaction(give_back)

    async def get(self, payment_id: str, caller: str | None = None) -> Payment:
        self._check_id(payment_id)
        return await self._find(payment_id, caller)

    @staticmethod
    def _check_id(payment_id: str) -> None:
        violations = Violations()
        violations.check(bool(payment_id), "payment_id", "must not be empty")
        violations.raise_if_any()

    async def _find(self, payment_id: str, caller: str | None) -> Payment:
        payment = await self._store.get(payment_id)
        if payment is None or payment.state is PaymentState.DECLINED:
            raise NotFound("payment", payment_id)
        ensure_owner(caller, payment.user_id)
        return payment
