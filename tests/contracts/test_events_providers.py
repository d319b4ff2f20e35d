"""Verify orders and payments against notifications' message pacts, through their real outboxes.

Each interaction's provider state drives the real domain (`Orders` with the boundary fakes of
its unit tests, or `Payments`) against the real SQLite store in a temporary file; the message is
the event that change committed to the outbox, decoded with notifications' reader schema from
the pact (`contracts.pact.avro.EventProvider`). A producer that stops writing a field the reader
needs fails the decoding; one whose events no longer carry a value the feed reads fails Pact's
comparison of the contents.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from contracts.pact import files
from contracts.pact.avro import EventProvider
from contracts.pact.states import ProviderHooks, StateSetup
from contracts.pact.verify import verify_messages
from contracts.schemas import default_registry
from services.notifications.consumer import CONSUMER
from services.orders.domain import Address, Item, Orders, SagaOptions
from services.orders.store import SqlOrderStore
from services.payments.domain import Payments
from services.payments.store import SqlPaymentStore
from services.runtime.outbox import StoredEvent
from tests.services.orders.fakes import FakeCatalog, FakePayments, FakeUsers

pytestmark = pytest.mark.pact_provider
PROVIDERS = ("orders", "payments")
USER = "usr_ann"  # known to FakeUsers
_serial = itertools.count(1)


class OrdersProducer:
    """orders' real store in `path`, driven by the real saga; a fresh connection per use."""

    def __init__(self, path: Path) -> None:
        self._path = str(path)

    def _place(self, token: str, address: Address | None = None) -> None:
        asyncio.run(self._placed(token, address))

    async def _placed(self, token: str, address: Address | None) -> None:
        store = SqlOrderStore(self._path)
        try:
            orders = Orders(store, FakeUsers(), FakeCatalog(), FakePayments(), SagaOptions())
            request_id = f"req-pact-{next(_serial)}"
            await orders.place(request_id, USER, [Item("sku-a", 2)], token, address)
        finally:
            await store.close()

    def states(self) -> dict[str, StateSetup]:
        berlin = Address("Ann", "1 Main St", "Berlin", "10115", "DE")
        return {
            "an order with a shipping address is placed": _setup(
                lambda: self._place("tok_visa", berlin)
            ),
            "an order is confirmed": _setup(lambda: self._place("tok_visa")),
            "an order is cancelled because its card was declined": _setup(
                lambda: self._place("tok_decline")
            ),
        }

    def events(self, subject: str) -> Sequence[StoredEvent]:
        return asyncio.run(self._events(subject))

    async def _events(self, subject: str) -> Sequence[StoredEvent]:
        store = SqlOrderStore(self._path)
        try:
            return await store.outbox.after(0, 1000, [subject])
        finally:
            await store.close()


class PaymentsProducer:
    """payments' real store in `path`, driven by the real domain."""

    def __init__(self, path: Path) -> None:
        self._path = str(path)

    def _charge(self, *, refund: bool) -> None:
        asyncio.run(self._charged(refund=refund))

    async def _charged(self, *, refund: bool) -> None:
        store = SqlPaymentStore(self._path)
        try:
            payments = Payments(store)
            payment = await payments.charge(f"ord_pact_{next(_serial)}", USER, 1200, "tok_visa")
            if refund:
                await payments.refund(payment.payment_id)
        finally:
            await store.close()

    def states(self) -> dict[str, StateSetup]:
        return {
            "a payment is captured": _setup(lambda: self._charge(refund=False)),
            "a payment is refunded": _setup(lambda: self._charge(refund=True)),
        }

    def events(self, subject: str) -> Sequence[StoredEvent]:
        return asyncio.run(self._events(subject))

    async def _events(self, subject: str) -> Sequence[StoredEvent]:
        store = SqlPaymentStore(self._path)
        try:
            return await store.outbox.after(0, 1000, [subject])
        finally:
            await store.close()


def _setup(change: Callable[[], None]) -> StateSetup:
    def setup(params: Mapping[str, Any]) -> None:
        change()

    return setup


@pytest.mark.parametrize("provider", PROVIDERS)
def test_producer_honours_notifications_pact(provider: str, tmp_path: Path) -> None:
    producer = (OrdersProducer if provider == "orders" else PaymentsProducer)(
        tmp_path / f"{provider}.db"
    )
    pacts = files.pacts_for(provider, consumer=CONSUMER)
    with ProviderHooks(producer.states()) as hooks:
        hooks.produce = EventProvider(pacts, default_registry(), producer.events)
        result = verify_messages(provider, pacts, hooks)
    assert result.passed, str(result)
