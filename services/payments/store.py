"""SQL storage for payments, on SQLite or PostgreSQL; the idempotency key is unique, so a key is
charged once. Captures and refunds commit their events in the same transaction (the outbox)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from services.payments import events
from services.payments.domain import Payment, PaymentState
from services.runtime.clock import utc_now
from services.runtime.database import Migrations, Row, connect
from services.runtime.outbox import Outbox

T = TypeVar("T")

MIGRATIONS = Migrations("payments", Path(__file__).parent / "migrations")


def _payment(row: Row) -> Payment:
    return Payment(
        row["payment_id"],
        row["idempotency_key"],
        row["user_id"],
        row["amount_cents"],
        PaymentState(row["state"]),
        datetime.fromisoformat(row["create_time"]),
    )


class SqlPaymentStore:
    def __init__(self, database: str) -> None:
        self._db = connect(database, MIGRATIONS)
        self.outbox = Outbox(self._db)

    async def transaction(self, body: Callable[[], Awaitable[T]]) -> T:
        return await self._db.transaction(body)

    async def add_once(self, payment: Payment) -> Payment:
        # The UNIQUE key, not a read before the write, is what makes concurrent retries safe:
        # every racer but one inserts nothing (on PostgreSQL it first waits for the one to
        # commit), and all read back the one stored row.
        async def insert() -> int:
            inserted = (
                await self._db.execute(
                    "INSERT INTO payments"
                    " (payment_id, idempotency_key, user_id, amount_cents, state, create_time)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                    (
                        payment.payment_id,
                        payment.idempotency_key,
                        payment.user_id,
                        payment.amount_cents,
                        payment.state.value,
                        payment.create_time.isoformat(),
                    ),
                )
            ).rowcount
            if inserted and payment.state is PaymentState.CAPTURED:
                await self.outbox.append([events.captured(payment)])
            return inserted

        await self._db.transaction(insert)
        row = (
            await self._db.execute(
                "SELECT * FROM payments WHERE idempotency_key = ?", (payment.idempotency_key,)
            )
        ).one()
        assert row is not None
        return _payment(row)

    async def get(self, payment_id: str) -> Payment | None:
        # Inside a refund the row stays locked until commit, so a payment is refunded once.
        row = (
            await self._db.execute(
                f"SELECT * FROM payments WHERE payment_id = ?{self._db.row_lock}", (payment_id,)
            )
        ).one()
        return None if row is None else _payment(row)

    async def set_state(self, payment_id: str, state: PaymentState) -> None:
        await self._db.execute(
            "UPDATE payments SET state = ? WHERE payment_id = ?", (state.value, payment_id)
        )
        if state is PaymentState.REFUNDED:
            payment = await self.get(payment_id)
            assert payment is not None
            await self.outbox.append([events.refunded(payment, utc_now())])

    async def close(self) -> None:
        await self._db.close()
