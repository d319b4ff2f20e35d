"""gRPC adapter for notifications: decode the request, call the domain, encode the result."""

from __future__ import annotations

from services.notifications.domain import Notification, Notifications
from services.runtime import context
from services.runtime.convert import timestamp
from services.runtime.server import Context
from shop.notifications.v1 import notifications_pb2, notifications_pb2_grpc


def encode(notification: Notification) -> notifications_pb2.Notification:
    return notifications_pb2.Notification(
        notification_id=notification.notification_id,
        user_id=notification.user_id,
        subject=notification.subject,
        body=notification.body,
        create_time=timestamp(notification.create_time),
    )


class NotificationServicer(notifications_pb2_grpc.NotificationServiceServicer):
    def __init__(self, notifications: Notifications) -> None:
        self._notifications = notifications

    async def ListNotifications(
        self, request: notifications_pb2.ListNotificationsRequest, ctx: Context
    ) -> notifications_pb2.ListNotificationsResponse:
        page = await self._notifications.list(
            request.user_id, request.page_size, request.page_token, context.caller.get()
        )
        return notifications_pb2.ListNotificationsResponse(
            notifications=[encode(n) for n in page.notifications],
            next_page_token=page.next_page_token,
        )
