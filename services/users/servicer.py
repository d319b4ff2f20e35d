"""gRPC adapter for users: decode the request, call the domain, encode the result."""

from __future__ import annotations

from services.runtime import context
from services.runtime.convert import timestamp
from services.runtime.server import Context
from services.users.domain import User, Users
from shop.users.v1 import users_pb2, users_pb2_grpc


def encode(user: User) -> users_pb2.User:
    return users_pb2.User(
        user_id=user.user_id,
        email=user.email,
        display_name=user.display_name,
        create_time=timestamp(user.create_time),
    )


class UserServicer(users_pb2_grpc.UserServiceServicer):
    def __init__(self, users: Users) -> None:
        self._users = users

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, ctx: Context
    ) -> users_pb2.CreateUserResponse:
        user = await self._users.create(request.email, request.display_name)
        return users_pb2.CreateUserResponse(user=encode(user))

    async def GetUser(
        self, request: users_pb2.GetUserRequest, ctx: Context
    ) -> users_pb2.GetUserResponse:
        user = await self._users.get(request.user_id, context.caller.get())
        return users_pb2.GetUserResponse(user=encode(user))

    async def ListUsers(
        self, request: users_pb2.ListUsersRequest, ctx: Context
    ) -> users_pb2.ListUsersResponse:
        page = await self._users.list(request.page_size, request.page_token, context.caller.get())
        return users_pb2.ListUsersResponse(
            users=[encode(user) for user in page.users], next_page_token=page.next_page_token
        )
