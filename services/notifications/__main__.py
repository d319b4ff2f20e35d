"""Run the notifications service: `python -m services.notifications`."""

from __future__ import annotations

import asyncio
import os
from functools import partial

from contracts.schemas import default_registry
from services.notifications.consumer import CONSUMER, SOURCES, FeedConsumer
from services.notifications.domain import Notifications
from services.notifications.servicer import NotificationServicer
from services.notifications.settings import Settings
from services.notifications.store import SqlNotificationStore
from services.runtime.background import Background, Job
from services.runtime.event_consumer import consume
from services.runtime.kafka import consume_kafka
from services.runtime.server import Service, serve
from shop.notifications.v1 import notifications_pb2, notifications_pb2_grpc


async def main() -> None:
    settings = Settings.from_env(os.environ)
    notifications = Notifications(SqlNotificationStore(settings.database))
    feed = FeedConsumer(notifications, default_registry())
    service = Service(
        notifications_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name,
        notifications_pb2_grpc.add_NotificationServiceServicer_to_server,
        NotificationServicer(notifications),
    )
    jobs: list[Job]
    if settings.events_broker:
        subjects = [s for subjects in SOURCES.values() for s in subjects]
        jobs = [partial(consume_kafka, settings.events_broker, CONSUMER, subjects, feed)]
    else:
        addresses = {"orders": settings.orders_addr, "payments": settings.payments_addr}
        jobs = [
            partial(
                consume,
                addresses[source],
                source,
                CONSUMER,
                feed,
                retry_seconds=settings.retry_seconds,
                subjects=subjects,
            )
            for source, subjects in SOURCES.items()
        ]
    background = Background(*jobs)
    await serve(settings.server, [service], on_started=background.start, on_stopped=background.stop)


if __name__ == "__main__":
    asyncio.run(main())
