"""Event adapter for notifications: decode each event with this consumer's reader schemas,
then hand it to the domain; an event that cannot be decoded is set aside, and delivery goes on."""

from __future__ import annotations

import logging

from contracts.schemas import DecodeError, Registry, SchemaVersion, decode
from services.notifications.domain import MESSAGES, Event, Notifications
from shop.events.v1 import events_pb2

log = logging.getLogger("shop.notifications.events")

CONSUMER = "notifications"
# The schema version of each subject this consumer reads with; a writer's newer or older
# version is resolved to it (Avro schema resolution).
READER_VERSIONS = {
    "shop.orders.OrderPlaced": 2,
    "shop.orders.OrderConfirmed": 1,
    "shop.orders.OrderCancelled": 1,
    "shop.payments.PaymentCaptured": 1,
    "shop.payments.PaymentRefunded": 1,
}
# Which producer publishes which subjects: the streams notifications subscribes to.
SOURCES = {
    "orders": (
        "shop.orders.OrderPlaced",
        "shop.orders.OrderConfirmed",
        "shop.orders.OrderCancelled",
    ),
    "payments": ("shop.payments.PaymentCaptured", "shop.payments.PaymentRefunded"),
}
assert (
    set(READER_VERSIONS) == set(MESSAGES) == {s for subjects in SOURCES.values() for s in subjects}
)


def readers(registry: Registry) -> dict[str, SchemaVersion]:
    return {
        subject: registry.subject(subject).versions[version - 1]
        for subject, version in READER_VERSIONS.items()
    }


class FeedConsumer:
    """The event handler `services.runtime.event_consumer.consume` drives for notifications."""

    def __init__(self, notifications: Notifications, registry: Registry) -> None:
        self._notifications = notifications
        self._registry = registry
        self._readers = readers(registry)

    async def offset(self, source: str) -> int:
        return await self._notifications.offset(source)

    async def apply(self, source: str, event: events_pb2.Event) -> None:
        try:
            reader = self._readers.get(event.subject)
            if reader is None:
                raise DecodeError(f"no reader schema for subject {event.subject!r}")
            record = decode(self._registry, event.payload, reader)
        except DecodeError as error:
            log.error(
                "event set aside: it cannot be decoded",
                extra={
                    "source": source,
                    "offset": event.offset,
                    "event_id": event.event_id,
                    "subject": event.subject,
                    "reason": str(error),
                },
            )
            await self._notifications.set_aside(
                source, event.offset, event.event_id, event.subject, event.payload, str(error)
            )
            return
        await self._notifications.receive(
            source, event.offset, Event(event.event_id, event.subject, record)
        )
