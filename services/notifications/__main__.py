"""Run the notifications service: `python -m services.notifications`."""

from __future__ import annotations

import asyncio
import os

from contracts.schemas import default_registry
from services.notifications.consumer import CONSUMER, SOURCES, FeedConsumer
from services.notifications.domain import Notifications
from services.notifications.servicer import NotificationServicer
from services.notifications.settings import Settings
from services.notifications.store import SqliteNotificationStore
from services.runtime.event_consumer import consume
from services.runtime.server import Service, serve
from shop.notifications.v1 import notifications_pb2, notifications_pb2_grpc


async def main() -> None:
    settings = Settings.from_env(os.environ)
    notifications = Notifications(SqliteNotificationStore(settings.database_path))
    feed = FeedConsumer(notifications, default_registry())
    addresses = {"orders": settings.orders_addr, "payments": settings.payments_addr}
    service = Service(
        notifications_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name,
        notifications_pb2_grpc.add_NotificationServiceServicer_to_server,
        NotificationServicer(notifications),
    )
    consumers: list[asyncio.Task[None]] = []

    async def started() -> None:
        for source, subjects in SOURCES.items():
            task = consume(
                addresses[source],
                source,
                CONSUMER,
                feed,
                retry_seconds=settings.retry_seconds,
                subjects=subjects,
            )
            consumers.append(asyncio.create_task(task))

    async def stopped() -> None:
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)

    await serve(settings.server, [service], on_started=started, on_stopped=stopped)


if __name__ == "__main__":
    asyncio.run(main())
