"""SQL storage for orders and their saga state, on SQLite or PostgreSQL, with leases so one
process runs each saga, and the outbox: each transition's events are committed with it."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from services.orders import events
from services.orders.domain import Address, Item, Order, OrderStore, Step
from services.runtime.database import IntegrityError, Migrations, Row, connect
from services.runtime.outbox import Outbox

MIGRATIONS = Migrations("orders", Path(__file__).parent / "migrations")

_COLUMNS = (
    "order_id, request_id, user_id, items, payment_token, shipping_address, status, step, "
    "total_cents, status_reason, payment_id, create_time, update_time"
)


def _items_json(items: tuple[Item, ...]) -> str:
    return json.dumps([[i.product_id, i.quantity, i.unit_price_cents] for i in items])


def _row(order: Order) -> tuple[object, ...]:
    return (
        order.order_id,
        order.request_id,
        order.user_id,
        _items_json(order.items),
        order.payment_token,
        json.dumps(vars(order.shipping_address)) if order.shipping_address else None,
        order.status.value,  # a view of the step, kept for SQL readers (reports, the chaos audit)
        order.step.value,
        order.total_cents,
        order.status_reason,
        order.payment_id,
        order.create_time.isoformat(),
        order.update_time.isoformat(),
    )


def _order(row: Row) -> Order:
    address = row["shipping_address"]
    return Order(
        order_id=row["order_id"],
        request_id=row["request_id"],
        user_id=row["user_id"],
        items=tuple(Item(p, q, c) for p, q, c in json.loads(row["items"])),
        payment_token=row["payment_token"],
        shipping_address=Address(**json.loads(address)) if address else None,
        step=Step(row["step"]),
        total_cents=row["total_cents"],
        status_reason=row["status_reason"],
        payment_id=row["payment_id"],
        create_time=datetime.fromisoformat(row["create_time"]),
        update_time=datetime.fromisoformat(row["update_time"]),
    )


class SqlOrderStore(OrderStore):
    def __init__(self, database: str) -> None:
        self._db = connect(database, MIGRATIONS)
        self.outbox = Outbox(self._db)

    async def create(self, order: Order, owner: str, lease_seconds: float) -> Order | None:
        async def insert() -> None:
            await self._db.execute(
                f"INSERT INTO orders ({_COLUMNS}, lease_owner, lease_until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*_row(order), owner, time.time() + lease_seconds),
            )
            await self.outbox.append([events.placed(order)])

        try:
            await self._db.transaction(insert)
        except IntegrityError:
            return None
        return order

    async def get(self, order_id: str) -> Order | None:
        row = (
            await self._db.execute(f"SELECT {_COLUMNS} FROM orders WHERE order_id = ?", (order_id,))
        ).one()
        return None if row is None else _order(row)

    async def by_request_id(self, request_id: str) -> Order | None:
        row = (
            await self._db.execute(
                f"SELECT {_COLUMNS} FROM orders WHERE request_id = ?", (request_id,)
            )
        ).one()
        return None if row is None else _order(row)

    async def list_for_user(self, user_id: str, offset: int, limit: int) -> list[Order]:
        result = await self._db.execute(
            f"SELECT {_COLUMNS} FROM orders WHERE user_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
            (user_id, limit, offset),
        )
        return [_order(row) for row in result.rows]

    async def save(self, order: Order, owner: str, lease_seconds: float) -> None:
        async def update() -> None:
            await self._db.execute(
                "UPDATE orders SET items = ?, status = ?, step = ?, total_cents = ?, "
                "status_reason = ?, payment_id = ?, update_time = ?, lease_owner = ?, "
                "lease_until = ? WHERE order_id = ?",
                (
                    _items_json(order.items),
                    order.status.value,
                    order.step.value,
                    order.total_cents,
                    order.status_reason,
                    order.payment_id,
                    order.update_time.isoformat(),
                    owner,
                    time.time() + lease_seconds,
                    order.order_id,
                ),
            )
            await self.outbox.append(events.saved(order))

        await self._db.transaction(update)

    async def claim(self, order_id: str, owner: str, lease_seconds: float) -> bool:
        # One conditional UPDATE: on PostgreSQL a racing claim waits for the row lock, then
        # re-checks the condition against the winner's lease and changes nothing.
        now = time.time()
        cursor = await self._db.execute(
            "UPDATE orders SET lease_owner = ?, lease_until = ? "
            "WHERE order_id = ? AND (lease_until < ? OR lease_owner IS NULL)",
            (owner, now + lease_seconds, order_id, now),
        )
        return cursor.rowcount == 1

    async def release_lease(self, order_id: str, owner: str) -> None:
        await self._db.execute(
            "UPDATE orders SET lease_owner = NULL, lease_until = 0 "
            "WHERE order_id = ? AND lease_owner = ?",
            (order_id, owner),
        )

    async def leased(self, order_id: str) -> bool:
        row = (
            await self._db.execute(
                "SELECT lease_until FROM orders WHERE order_id = ? AND lease_owner IS NOT NULL",
                (order_id,),
            )
        ).one()
        return row is not None and row["lease_until"] > time.time()

    async def unsettled(self) -> list[str]:
        result = await self._db.execute(
            "SELECT order_id FROM orders WHERE step NOT IN ('CONFIRMED', 'CANCELLED') ORDER BY seq"
        )
        return [row["order_id"] for row in result.rows]

    async def close(self) -> None:
        await self._db.close()
