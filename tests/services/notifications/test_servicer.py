"""The notifications servicer over a real in-process gRPC server: encoding and error statuses."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from grpc import aio

from services.notifications.domain import Notification, Notifications
from services.notifications.servicer import NotificationServicer
from services.notifications.store import SqlNotificationStore
from services.runtime.server import Service
from shop.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from tests.services.conftest import Serve, error_reason, field_violations

SENT = datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC)


def notifications_service(store: SqlNotificationStore) -> Service:
    return Service(
        "shop.notifications.v1.NotificationService",
        notifications_pb2_grpc.add_NotificationServiceServicer_to_server,
        NotificationServicer(Notifications(store)),
    )


async def test_list_encodes_notifications(serve: Serve) -> None:
    store = SqlNotificationStore(":memory:")
    await store.add(Notification("ntf_1", "usr_ann", "Order confirmed", "Thanks!", SENT))
    async with serve([notifications_service(store)]) as channel:
        stub = notifications_pb2_grpc.NotificationServiceStub(channel)
        page = await stub.ListNotifications(
            notifications_pb2.ListNotificationsRequest(user_id="usr_ann"),
            metadata=(("x-user-id", "usr_ann"),),
        )
    [got] = page.notifications
    assert (got.notification_id, got.user_id, got.subject, got.body) == (
        "ntf_1",
        "usr_ann",
        "Order confirmed",
        "Thanks!",
    )
    assert got.create_time.ToDatetime(tzinfo=UTC) == SENT
    assert page.next_page_token == ""


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (notifications_pb2.ListNotificationsRequest(), {"user_id"}),
        (notifications_pb2.ListNotificationsRequest(user_id="u", page_size=101), {"page_size"}),
        (notifications_pb2.ListNotificationsRequest(user_id="u", page_token="!"), {"page_token"}),
    ],
)
async def test_bad_input_names_the_field(
    serve: Serve, request_: notifications_pb2.ListNotificationsRequest, fields: set[str]
) -> None:
    async with serve([notifications_service(SqlNotificationStore(":memory:"))]) as channel:
        stub = notifications_pb2_grpc.NotificationServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as error:
            await stub.ListNotifications(request_)
        assert set(field_violations(error.value)) == fields


async def test_another_users_notifications_are_denied(serve: Serve) -> None:
    async with serve([notifications_service(SqlNotificationStore(":memory:"))]) as channel:
        stub = notifications_pb2_grpc.NotificationServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as error:
            await stub.ListNotifications(
                notifications_pb2.ListNotificationsRequest(user_id="usr_ann"),
                metadata=(("x-user-id", "usr_bob"),),
            )
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(error.value) == "NOT_OWNER"
