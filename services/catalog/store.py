"""SQLite storage for the catalog: products with their stock, and reservations with their lines."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager

from services.catalog.domain import (
    Product,
    Reservation,
    ReservationLine,
    ReservationState,
)
from services.runtime.sqlite import connect, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reservation_lines (
    reservation_id TEXT NOT NULL REFERENCES reservations (reservation_id),
    line_no INTEGER NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (product_id),
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (reservation_id, line_no)
);
"""


def _product(row: sqlite3.Row) -> Product:
    return Product(
        row["product_id"], row["name"], row["description"], row["price_cents"], row["stock"]
    )


class SqliteCatalogStore:
    def __init__(self, path: str) -> None:
        self._db = connect(path, SCHEMA)

    def transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db)

    def seed(self, products: Sequence[Product]) -> bool:
        with self.transaction():
            if self._db.execute("SELECT 1 FROM products LIMIT 1").fetchone() is not None:
                return False
            self._db.executemany(
                "INSERT INTO products (product_id, name, description, price_cents, stock)"
                " VALUES (?, ?, ?, ?, ?)",
                [(p.product_id, p.name, p.description, p.price_cents, p.stock) for p in products],
            )
        return True

    def list(self, offset: int, limit: int) -> list[Product]:
        rows = self._db.execute(
            "SELECT * FROM products ORDER BY product_id LIMIT ? OFFSET ?", (limit, offset)
        ).fetchall()
        return [_product(row) for row in rows]

    def get(self, product_id: str) -> Product | None:
        row = self._db.execute(
            "SELECT * FROM products WHERE product_id = ?", (product_id,)
        ).fetchone()
        return None if row is None else _product(row)

    def adjust_stock(self, product_id: str, delta: int) -> None:
        self._db.execute(
            "UPDATE products SET stock = stock + ? WHERE product_id = ?", (delta, product_id)
        )

    def get_reservation(self, reservation_id: str) -> Reservation | None:
        row = self._db.execute(
            "SELECT state FROM reservations WHERE reservation_id = ?", (reservation_id,)
        ).fetchone()
        if row is None:
            return None
        lines = self._db.execute(
            "SELECT product_id, quantity, unit_price_cents FROM reservation_lines"
            " WHERE reservation_id = ? ORDER BY line_no",
            (reservation_id,),
        ).fetchall()
        return Reservation(
            reservation_id,
            tuple(ReservationLine(*line) for line in lines),
            ReservationState(row["state"]),
        )

    def add_reservation(self, reservation: Reservation) -> None:
        self._db.execute(
            "INSERT INTO reservations (reservation_id, state) VALUES (?, ?)",
            (reservation.reservation_id, reservation.state.value),
        )
        self._db.executemany(
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

    def set_state(self, reservation_id: str, state: ReservationState) -> None:
        self._db.execute(
            "UPDATE reservations SET state = ? WHERE reservation_id = ?",
            (state.value, reservation_id),
        )

    def close(self) -> None:
        self._db.close()
