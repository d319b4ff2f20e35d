"""Run the notifications service: `python -m services.notifications`."""

from __future__ import annotations

import asyncio
import os

from services.notifications.domain import Notifications
from services.notifications.servicer import NotificationServicer
from services.notifications.settings import Settings
from services.notifications.store import SqliteNotificationStore
from services.runtime.server import Service, serve
from shop.notifications.v1 import notifications_pb2, notifications_pb2_grpc


async def main() -> None:
    settings = Settings.from_env(os.environ)
    notifications = Notifications(SqliteNotificationStore(settings.database_path))
    service = Service(
        notifications_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name,
        notifications_pb2_grpc.add_NotificationServiceServicer_to_server,
        NotificationServicer(notifications),
    )
    await serve(settings.server, [service])


if __name__ == "__main__":
    asyncio.run(main())
