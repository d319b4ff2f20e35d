"""The users servicer over a real in-process gRPC server: encoding and error statuses."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from services.runtime.server import Service
from services.users.domain import Users
from services.users.servicer import UserServicer
from services.users.store import SqlUserStore
from shop.users.v1 import users_pb2, users_pb2_grpc
from tests.services.conftest import Serve, error_reason, field_violations


def users_service() -> Service:
    return Service(
        "shop.users.v1.UserService",
        users_pb2_grpc.add_UserServiceServicer_to_server,
        UserServicer(Users(SqlUserStore(":memory:"))),
    )


async def test_create_get_list(serve: Serve) -> None:
    async with serve([users_service()]) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        created = await stub.CreateUser(
            users_pb2.CreateUserRequest(email="ann@example.com", display_name="Ann")
        )
        got = await stub.GetUser(users_pb2.GetUserRequest(user_id=created.user.user_id))
        assert got.user == created.user
        assert got.user.create_time.seconds > 0
        listed = await stub.ListUsers(users_pb2.ListUsersRequest())
        assert [u.user_id for u in listed.users] == [created.user.user_id]


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (users_pb2.CreateUserRequest(email="x", display_name="Ann"), {"email"}),
        (users_pb2.CreateUserRequest(email="a@b.co", display_name=""), {"display_name"}),
    ],
)
async def test_create_rejects_bad_input(
    serve: Serve, request_: users_pb2.CreateUserRequest, fields: set[str]
) -> None:
    async with serve([users_service()]) as channel:
        with pytest.raises(aio.AioRpcError) as error:
            await users_pb2_grpc.UserServiceStub(channel).CreateUser(request_)
        assert set(field_violations(error.value)) == fields


async def test_status_codes_for_business_errors(serve: Serve) -> None:
    async with serve([users_service()]) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        request = users_pb2.CreateUserRequest(email="a@b.co", display_name="Ann")
        ann = (await stub.CreateUser(request)).user
        with pytest.raises(aio.AioRpcError) as duplicate:
            await stub.CreateUser(request)
        assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(duplicate.value) == "EMAIL_TAKEN"
        with pytest.raises(aio.AioRpcError) as missing:
            await stub.GetUser(users_pb2.GetUserRequest(user_id="usr_nobody"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(aio.AioRpcError) as foreign:
            await stub.GetUser(
                users_pb2.GetUserRequest(user_id=ann.user_id),
                metadata=(("x-user-id", "usr_other"),),
            )
        assert foreign.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(aio.AioRpcError) as paging:
            await stub.ListUsers(users_pb2.ListUsersRequest(page_size=1000))
        assert set(field_violations(paging.value)) == {"page_size"}


async def test_list_users_is_in_mesh_only(serve: Serve) -> None:
    """A call made for an end user (caller header set) never lists users, not even itself."""
    async with serve([users_service()]) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        ann = await stub.CreateUser(users_pb2.CreateUserRequest(email="a@b.co", display_name="A"))
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.ListUsers(
                users_pb2.ListUsersRequest(), metadata=(("x-user-id", ann.user.user_id),)
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(refused.value) == "IN_MESH_ONLY"
        assert "a@b.co" not in str(refused.value.details())
