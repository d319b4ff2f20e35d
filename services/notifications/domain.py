"""Notifications: each user's feed, built from the shop's events, newest first. Free of gRPC and
generated code.

Events arrive at least once; the store applies an event id once, so a redelivery adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.runtime.errors import Violations
from services.runtime.identity import ensure_owner
from services.runtime.paging import page_request


@dataclass(frozen=True)
class Notification:
    notification_id: str
    user_id: str
    subject: str
    body: str
    create_time: datetime


@dataclass(frozen=True)
class Event:
    """A decoded event: its id (also the id of the notification it makes), subject and record."""

    event_id: str
    subject: str
    record: Mapping[str, Any]


class NotificationStore(Protocol):
    async def add(self, notification: Notification) -> None:
        """Insert `notification`; adding an id that is already stored changes nothing."""

    async def list_for_user(self, user_id: str, offset: int, limit: int) -> list[Notification]:
        """The user's notifications, newest first."""

    async def applied_offset(self, source: str) -> int:
        """Offset of the last event applied from `source` (0 before the first)."""

    async def apply(
        self, source: str, offset: int, event_id: str, notification: Notification | None
    ) -> bool:
        """In one transaction: remember `event_id`, add `notification`, advance the source's
        offset. An event id seen before only advances the offset; returns whether it was new."""

    async def set_aside(
        self, source: str, offset: int, event_id: str, subject: str, payload: bytes, reason: str
    ) -> None:
        """Keep an event that cannot be applied (dead letter) and advance the offset past it."""


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d} USD"


def _placed(r: Mapping[str, Any]) -> tuple[str, str]:
    units = sum(int(line["quantity"]) for line in r["items"])
    where = f", shipping to {r['shipping_country']}" if r.get("shipping_country") else ""
    return "Order received", f"We received order {r['order_id']} for {units} item(s){where}."


def _confirmed(r: Mapping[str, Any]) -> tuple[str, str]:
    total = _money(r["total_cents"])
    return "Order confirmed", f"Order {r['order_id']} is confirmed; {total} was charged."


def _cancelled(r: Mapping[str, Any]) -> tuple[str, str]:
    return "Order cancelled", f"Order {r['order_id']} was cancelled: {r['reason']}."


def _captured(r: Mapping[str, Any]) -> tuple[str, str]:
    return "Payment received", f"We charged {_money(r['amount_cents'])} ({r['payment_id']})."


def _refunded(r: Mapping[str, Any]) -> tuple[str, str]:
    return "Payment refunded", f"We refunded {_money(r['amount_cents'])} ({r['payment_id']})."


# What each subject tells the customer: (subject line, body) from the event's record.
MESSAGES: Mapping[str, Callable[[Mapping[str, Any]], tuple[str, str]]] = {
    "shop.orders.OrderPlaced": _placed,
    "shop.orders.OrderConfirmed": _confirmed,
    "shop.orders.OrderCancelled": _cancelled,
    "shop.payments.PaymentCaptured": _captured,
    "shop.payments.PaymentRefunded": _refunded,
}


def notification_for(event: Event) -> Notification | None:
    """The feed entry an event makes, or None for a subject the feed does not show."""
    message = MESSAGES.get(event.subject)
    if message is None:
        return None
    subject, body = message(event.record)
    record = event.record
    return Notification(event.event_id, record["user_id"], subject, body, record["occurred_at"])


@dataclass(frozen=True)
class NotificationPage:
    notifications: list[Notification]
    next_page_token: str


class Notifications:
    def __init__(self, store: NotificationStore) -> None:
        self._store = store

    async def list(
        self, user_id: str, page_size: int, page_token: str, caller: str | None = None
    ) -> NotificationPage:
        violations = Violations()
        violations.check(bool(user_id), "user_id", "must not be empty")
        page = page_request(page_size, page_token, violations)
        violations.raise_if_any()
        ensure_owner(caller, user_id)
        notifications, token = await page.fetch(
            lambda offset, limit: self._store.list_for_user(user_id, offset, limit)
        )
        return NotificationPage(notifications, token)

    async def offset(self, source: str) -> int:
        return await self._store.applied_offset(source)

    async def receive(self, source: str, offset: int, event: Event) -> bool:
        """Apply one event from `source` once; returns whether it was new."""
        return await self._store.apply(source, offset, event.event_id, notification_for(event))

    async def set_aside(
        self, source: str, offset: int, event_id: str, subject: str, payload: bytes, reason: str
    ) -> None:
        await self._store.set_aside(source, offset, event_id, subject, payload, reason)
