"""Run the users service: `python -m services.users`."""

from __future__ import annotations

import asyncio
import os

from services.runtime.server import Service, serve
from services.users.domain import Users
from services.users.servicer import UserServicer
from services.users.settings import Settings
from services.users.store import SqlUserStore
from shop.users.v1 import users_pb2, users_pb2_grpc


async def main() -> None:
    settings = Settings.from_env(os.environ)
    users = Users(SqlUserStore(settings.database))
    service = Service(
        users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
        users_pb2_grpc.add_UserServiceServicer_to_server,
        UserServicer(users),
    )
    await serve(settings.server, [service])


if __name__ == "__main__":
    asyncio.run(main())
