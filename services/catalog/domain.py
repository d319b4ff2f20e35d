"""Catalog: products, and stock reserved all or nothing, free of gRPC and generated code."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from services.runtime.errors import FailedPrecondition, NotFound, Violations
from services.runtime.paging import page_request


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    description: str
    price_cents: int
    stock: int


@dataclass(frozen=True)
class RequestedLine:
    """A quantity of one product, as a caller asks for it."""

    product_id: str
    quantity: int


@dataclass(frozen=True)
class ReservationLine:
    """A reserved quantity of one product, with its unit price at reservation time."""

    product_id: str
    quantity: int
    unit_price_cents: int


class ReservationState(enum.StrEnum):
    HELD = "HELD"
    RELEASED = "RELEASED"


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    lines: tuple[ReservationLine, ...]
    state: ReservationState


T = TypeVar("T")


class CatalogStore(Protocol):
    async def transaction(self, body: Callable[[], Awaitable[T]]) -> T:
        """`await body()` atomically: all of its reads and writes or none. It awaits nothing
        but the store."""

    async def seed(self, products: Sequence[Product]) -> bool:
        """Insert `products` if there are no products yet; True when it did."""

    async def list(self, offset: int, limit: int) -> list[Product]:
        """Products ordered by product id."""

    async def get(self, product_id: str) -> Product | None: ...

    async def adjust_stock(self, product_id: str, delta: int) -> None: ...

    async def get_reservation(self, reservation_id: str) -> Reservation | None: ...

    async def add_reservation(self, reservation: Reservation) -> None: ...

    async def set_state(self, reservation_id: str, state: ReservationState) -> None: ...


@dataclass(frozen=True)
class ProductPage:
    products: list[Product]
    next_page_token: str


def _signature(lines: Sequence[RequestedLine | ReservationLine]) -> list[tuple[str, int]]:
    return sorted((line.product_id, line.quantity) for line in lines)


class Catalog:
    def __init__(self, store: CatalogStore) -> None:
        self._store = store

    async def seed(self, products: Sequence[Product]) -> bool:
        return await self._store.seed(products)

    async def list(self, page_size: int, page_token: str) -> ProductPage:
        violations = Violations()
        page = page_request(page_size, page_token, violations)
        violations.raise_if_any()
        return ProductPage(*await page.fetch(self._store.list))

    async def get(self, product_id: str) -> Product:
        violations = Violations()
        violations.check(bool(product_id), "product_id", "must not be empty")
        violations.raise_if_any()
        product = await self._store.get(product_id)
        if product is None:
            raise NotFound("product", product_id)
        return product

    async def reserve(self, reservation_id: str, lines: Sequence[RequestedLine]) -> Reservation:
        """Take stock for every line or for none; the same reservation id is served once."""
        violations = Violations()
        violations.check(bool(reservation_id), "reservation_id", "must not be empty")
        violations.check(bool(lines), "lines", "must have at least one line")
        first_line: dict[str, int] = {}
        for i, line in enumerate(lines):
            violations.check(bool(line.product_id), f"lines[{i}].product_id", "must not be empty")
            violations.check(line.quantity >= 1, f"lines[{i}].quantity", "must be at least 1")
            if line.product_id in first_line:
                violations.add(
                    f"lines[{i}].product_id",
                    f"repeats lines[{first_line[line.product_id]}]; use one line per product",
                )
            elif line.product_id:
                first_line[line.product_id] = i

        async def take() -> Reservation:
            # Products are never deleted, so an unknown one is bad input, reported with the rest.
            products: dict[str, Product] = {}
            # In id order: on PostgreSQL each read locks its row, and one order means no deadlock.
            for product_id, i in sorted(first_line.items()):
                product = await self._store.get(product_id)
                if product is None:
                    violations.add(f"lines[{i}].product_id", f"unknown product {product_id!r}")
                else:
                    products[product_id] = product
            violations.raise_if_any()
            existing = await self._store.get_reservation(reservation_id)
            if existing is not None:
                return _replay(existing, lines)
            short = [
                f"{line.product_id} ({stock} left, {line.quantity} wanted)"
                for line in lines
                if (stock := products[line.product_id].stock) < line.quantity
            ]
            if short:
                raise FailedPrecondition(
                    f"not enough stock for {', '.join(short)}", reason="OUT_OF_STOCK"
                )
            reservation = Reservation(
                reservation_id,
                tuple(
                    ReservationLine(
                        line.product_id, line.quantity, products[line.product_id].price_cents
                    )
                    for line in lines
                ),
                ReservationState.HELD,
            )
            for line in lines:
                await self._store.adjust_stock(line.product_id, -line.quantity)
            await self._store.add_reservation(reservation)
            return reservation

        return await self._store.transaction(take)

    async def release(self, reservation_id: str) -> Reservation:
        """Give a reservation's stock back exactly once; repeating it is harmless."""
        violations = Violations()
        violations.check(bool(reservation_id), "reservation_id", "must not be empty")
        violations.raise_if_any()

        async def give_back() -> Reservation:
            existing = await self._store.get_reservation(reservation_id)
            if existing is None:
                # A saga compensates even when its reserve never landed (failed or timed out), so
                # this must succeed. Remembering the id as released stops a late reserve with it
                # from taking stock that nobody would give back.
                released = Reservation(reservation_id, (), ReservationState.RELEASED)
                await self._store.add_reservation(released)
                return released
            if existing.state is ReservationState.RELEASED:
                return existing
            for line in existing.lines:
                await self._store.adjust_stock(line.product_id, line.quantity)
            await self._store.set_state(reservation_id, ReservationState.RELEASED)
            return replace(existing, state=ReservationState.RELEASED)

        return await self._store.transaction(give_back)


def _replay(existing: Reservation, lines: Sequence[RequestedLine]) -> Reservation:
    """The answer to a repeated reserve: the first result if it asked for the same lines."""
    if not existing.lines:
        raise FailedPrecondition(
            f"reservation {existing.reservation_id!r} was released before it was made; "
            "use a new reservation id",
            reason="RESERVATION_RELEASED",
        )
    if _signature(existing.lines) != _signature(lines):
        raise FailedPrecondition(
            f"reservation {existing.reservation_id!r} already exists with different lines",
            reason="RESERVATION_MISMATCH",
        )
    return existing
