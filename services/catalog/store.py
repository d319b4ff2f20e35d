"""SQL storage for the catalog, on SQLite or PostgreSQL: products with their stock, and
reservations with their lines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from services.catalog.domain import (
    Product,
    Reservation,
    ReservationLine,
    ReservationState,
)
from services.runtime.database import Migrations, Row, connect

T = TypeVar("T")

MIGRATIONS = Migrations("catalog", Path(__file__).parent / "migrations")


def _product(row: Row) -> Product:
    return Product(
        row["product_id"], row["name"], row["description"], row["price_cents"], row["stock"]
    )


class SqlCatalogStore:
    def __init__(self, database: str) -> None:
        self._db = connect(database, MIGRATIONS)

    async def transaction(self, body: Callable[[], Awaitable[T]]) -> T:
        return await self._db.transaction(body)

    async def seed(self, products: Sequence[Product]) -> bool:
        async def fill() -> bool:
            if (await self._db.execute("SELECT 1 FROM products LIMIT 1")).one() is not None:
                return False
            await self._db.executemany(
                "INSERT INTO products (product_id, name, description, price_cents, stock)"
                # Another replica may be seeding at the same moment.
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (product_id) DO NOTHING",
                [(p.product_id, p.name, p.description, p.price_cents, p.stock) for p in products],
            )
            return True

        return await self.transaction(fill)

    async def list(self, offset: int, limit: int) -> list[Product]:
        rows = (
            await self._db.execute(
                "SELECT * FROM products ORDER BY product_id LIMIT ? OFFSET ?", (limit, offset)
            )
        ).rows
        return [_product(row) for row in rows]

    async def get(self, product_id: str) -> Product | None:
        # Inside a reservation the row stays locked until commit: the stock read is the stock
        # the update changes.
        row = (
            await self._db.execute(
                f"SELECT * FROM products WHERE product_id = ?{self._db.row_lock}", (product_id,)
            )
        ).one()
        return None if row is None else _product(row)

    async def adjust_stock(self, product_id: str, delta: int) -> None:
        await self._db.execute(
            "UPDATE products SET stock = stock + ? WHERE product_id = ?", (delta, product_id)
        )

    async def get_reservation(self, reservation_id: str) -> Reservation | None:
        row = (
            await self._db.execute(
                f"SELECT state FROM reservations WHERE reservation_id = ?{self._db.row_lock}",
                (reservation_id,),
            )
        ).one()
        if row is None:
            return None
        lines = (
            await self._db.execute(
                "SELECT product_id, quantity, unit_price_cents FROM reservation_lines"
                " WHERE reservation_id = ? ORDER BY line_no",
                (reservation_id,),
            )
        ).rows
        return Reservation(
            reservation_id,
            tuple(
                ReservationLine(line["product_id"], line["quantity"], line["unit_price_cents"])
                for line in lines
            ),
            ReservationState(row["state"]),
        )

    async def add_reservation(self, reservation: Reservation) -> None:
        await self._db.execute(
            "INSERT INTO reservations (reservation_id, state) VALUES (?, ?)",
            (reservation.reservation_id, reservation.state.value),
        )
        await self._db.executemany(
            "INSERT INTO reservation_lines"
            " (reservation_id, line_no, product_id, quantity, unit_price_cents)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (
                    reservation.reservation_id,
                    n,
                    line.product_id,
                    line.quantity,
                    line.unit_price_cents,
                )
                for n, line in enumerate(reservation.lines)
            ],
        )

    async def set_state(self, reservation_id: str, state: ReservationState) -> None:
        await self._db.execute(
            "UPDATE reservations SET state = ? WHERE reservation_id = ?",
            (state.value, reservation_id),
        )

    async def close(self) -> None:
        await self._db.close()
