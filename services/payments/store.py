"""SQLite storage for payments; the idempotency key is unique, so a key is charged once. Captures
and refunds commit their events in the same transaction (the outbox)."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from datetime import datetime

from services.payments import events
from services.payments.domain import Payment, PaymentState
from services.runtime.clock import utc_now
from services.runtime.outbox import Outbox
from services.runtime.sqlite import connect, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    payment_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    state TEXT NOT NULL,
    create_time TEXT NOT NULL
);
"""


def _payment(row: sqlite3.Row) -> Payment:
    return Payment(
        row["payment_id"],
        row["idempotency_key"],
        row["user_id"],
        row["amount_cents"],
        PaymentState(row["state"]),
        datetime.fromisoformat(row["create_time"]),
    )


class SqlitePaymentStore:
    def __init__(self, path: str) -> None:
        self._db = connect(path, SCHEMA)
        self.outbox = Outbox(self._db)

    def transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db)

    def add_once(self, payment: Payment) -> Payment:
        # The UNIQUE key, not a read before the write, is what makes concurrent retries safe:
        # every racer but one inserts nothing, and all read back the one stored row.
        with transaction(self._db):
            inserted = self._db.execute(
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
            ).rowcount
            if inserted and payment.state is PaymentState.CAPTURED:
                self.outbox.append([events.captured(payment)])
        row = self._db.execute(
            "SELECT * FROM payments WHERE idempotency_key = ?", (payment.idempotency_key,)
        ).fetchone()
        return _payment(row)

    def get(self, payment_id: str) -> Payment | None:
        row = self._db.execute(
            "SELECT * FROM payments WHERE payment_id = ?", (payment_id,)
        ).fetchone()
        return None if row is None else _payment(row)

    def set_state(self, payment_id: str, state: PaymentState) -> None:
        self._db.execute(
            "UPDATE payments SET state = ? WHERE payment_id = ?", (state.value, payment_id)
        )
        if state is PaymentState.REFUNDED:
            payment = self.get(payment_id)
            assert payment is not None
            self.outbox.append([events.refunded(payment, utc_now())])

    def close(self) -> None:
        self._db.close()
