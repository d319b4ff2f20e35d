"""In-memory peers for the orders domain: the boundary fakes, each able to refuse or vanish."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.orders.domain import Item, StepFailed, StepInterrupted


@dataclass
class FakeUsers:
    known: set[str] = field(default_factory=lambda: {"usr_ann", "usr_bob"})

    async def exists(self, user_id: str) -> bool:
        return user_id in self.known


@dataclass
class FakeCatalog:
    stock: dict[str, int] = field(default_factory=lambda: {"sku-a": 10, "sku-b": 1})
    prices: dict[str, int] = field(default_factory=lambda: {"sku-a": 250, "sku-b": 1000})
    held: dict[str, tuple[Item, ...]] = field(default_factory=dict)
    down: bool = False

    async def product_exists(self, product_id: str) -> bool:
        return product_id in self.stock

    async def reserve(self, reservation_id: str, items: tuple[Item, ...]) -> tuple[Item, ...]:
        if self.down:
            raise StepInterrupted("catalog down")
        if reservation_id not in self.held:
            if any(self.stock[i.product_id] < i.quantity for i in items):
                raise StepFailed("stock reservation failed: out of stock")
            for item in items:
                self.stock[item.product_id] -= item.quantity
            self.held[reservation_id] = items
        return tuple(
            Item(i.product_id, i.quantity, self.prices[i.product_id])
            for i in self.held[reservation_id]
        )

    async def release(self, reservation_id: str) -> None:
        if self.down:
            raise StepInterrupted("catalog down")
        for item in self.held.pop(reservation_id, ()):
            self.stock[item.product_id] += item.quantity


@dataclass
class FakePayments:
    captured: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (id, amount)
    refunded: set[str] = field(default_factory=set)
    down: bool = False

    async def charge(self, key: str, user_id: str, amount_cents: int, token: str) -> str:
        if self.down:
            raise StepInterrupted("payments down")
        if token == "tok_decline":
            raise StepFailed("payment failed: the card was declined")
        self.captured.setdefault(key, (f"pay_{len(self.captured) + 1}", amount_cents))
        return self.captured[key][0]

    async def refund(self, payment_id: str) -> None:
        if self.down:
            raise StepInterrupted("payments down")
        self.refunded.add(payment_id)
