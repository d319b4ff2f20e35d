"""The shared runtime: settings errors, metrics, deadlines on outgoing calls, graceful stop."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.local.stack import free_port
from services.orders.clients import READ_METHODS
from services.runtime import context
from services.runtime.channels import open_channel, retry_service_config
from services.runtime.errors import Unavailable
from services.runtime.server import Service, build_server
from services.runtime.settings import ServerSettings, SettingsError
from services.users.domain import Users
from services.users.servicer import UserServicer
from services.users.settings import Settings as UserSettings
from services.users.store import SqlUserStore
from shop.users.v1 import users_pb2, users_pb2_grpc
from tests.services.users.test_servicer import users_service


def test_settings_name_the_variable_that_is_wrong() -> None:
    with pytest.raises(SettingsError, match="PORT must be an integer"):
        ServerSettings.from_env("x", {"PORT": "eighty"}, default_port=1)
    with pytest.raises(SettingsError, match="TELEMETRY must be true or false"):
        ServerSettings.from_env("x", {"TELEMETRY": "maybe"}, default_port=1)
    with pytest.raises(SettingsError, match="USERS_ADDR must be set"):
        from services.orders.settings import Settings

        Settings.from_env({"CATALOG_ADDR": "a:1", "PAYMENTS_ADDR": "b:2"})
    assert UserSettings.from_env({"DATABASE_PATH": ":memory:"}).server.port == 50051


async def test_metrics_count_requests_errors_and_latency() -> None:
    port = free_port()
    settings = ServerSettings.from_env(
        "users", {"PORT": "0", "METRICS_PORT": str(port), "LOG_LEVEL": "WARNING"}, default_port=0
    )
    running = await build_server(settings, [users_service()])
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = users_pb2_grpc.UserServiceStub(channel)
            await stub.ListUsers(users_pb2.ListUsersRequest())
            with pytest.raises(aio.AioRpcError):
                await stub.GetUser(users_pb2.GetUserRequest(user_id="usr_missing"))
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        )
    finally:
        await running.stop(0)
    text = body.decode()
    get_user = 'grpc_method="/shop.users.v1.UserService/GetUser"'
    assert f'grpc_server_handled_total{{grpc_code="NOT_FOUND",{get_user}}} 1.0' in text
    assert f"grpc_server_errors_total{{{get_user}}} 1.0" in text
    assert (
        'grpc_server_handling_seconds_count{grpc_method="/shop.users.v1.UserService/ListUsers"} 1.0'
        in text
    )


async def test_outgoing_calls_get_the_default_deadline_or_what_is_left_of_the_incoming_one() -> (
    None
):
    running = await build_server(
        ServerSettings.from_env("h", {"PORT": "0", "LOG_LEVEL": "WARNING"}, default_port=0), []
    )
    address = f"127.0.0.1:{running.port}"
    request = health_pb2.HealthCheckRequest()
    try:
        # Health.Watch never ends by itself, so only a deadline can end these calls.
        async with open_channel(address, default_timeout=0.2, telemetry=False) as channel:
            with pytest.raises(aio.AioRpcError) as default:
                async for _ in health_pb2_grpc.HealthStub(channel).Watch(request):
                    pass
        assert default.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        async with open_channel(address, default_timeout=60, telemetry=False) as channel:
            token = context.deadline.set(time.monotonic() + 0.2)
            try:
                with pytest.raises(aio.AioRpcError) as propagated:
                    async for _ in health_pb2_grpc.HealthStub(channel).Watch(request):
                        pass
            finally:
                context.deadline.reset(token)
        assert propagated.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await running.stop(0)


def test_retry_policy_covers_only_the_named_reads() -> None:
    config = retry_service_config(["/shop.users.v1.UserService/GetUser"])
    assert '"service": "shop.users.v1.UserService", "method": "GetUser"' in config
    assert '"retryableStatusCodes": ["UNAVAILABLE"]' in config


async def test_health_turns_not_serving_as_soon_as_shutdown_starts() -> None:
    running = await build_server(
        ServerSettings.from_env("users", {"PORT": "0", "LOG_LEVEL": "WARNING"}, default_port=0),
        [users_service()],
    )
    async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="shop.users.v1.UserService")
        )
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(running.stop(1))
        second = await watch.read()
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping


class FlakyUserServicer(UserServicer):
    """Answers UNAVAILABLE to every other GetUser, like a pod that is restarting."""

    def __init__(self) -> None:
        super().__init__(Users(SqlUserStore(":memory:")))
        self.calls = 0

    async def GetUser(self, request: Any, ctx: Any) -> Any:
        self.calls += 1
        if self.calls % 2 == 1:
            raise Unavailable("restarting")
        return await super().GetUser(request, ctx)


async def test_reads_are_retried_on_unavailable_and_only_the_named_ones() -> None:
    flaky = FlakyUserServicer()
    service = Service(
        "shop.users.v1.UserService", users_pb2_grpc.add_UserServiceServicer_to_server, flaky
    )
    running = await build_server(
        ServerSettings.from_env("users", {"PORT": "0", "LOG_LEVEL": "WARNING"}, default_port=0),
        [service],
    )
    address = f"127.0.0.1:{running.port}"
    request = users_pb2.GetUserRequest(user_id="usr_missing")
    try:
        async with open_channel(address, default_timeout=5, read_methods=READ_METHODS) as channel:
            with pytest.raises(aio.AioRpcError) as retried:
                await users_pb2_grpc.UserServiceStub(channel).GetUser(request)
        # The retry reached the application, which answered for real.
        assert retried.value.code() == grpc.StatusCode.NOT_FOUND
        assert flaky.calls == 2
        async with open_channel(address, default_timeout=5) as channel:
            with pytest.raises(aio.AioRpcError) as not_retried:
                await users_pb2_grpc.UserServiceStub(channel).GetUser(request)
        assert not_retried.value.code() == grpc.StatusCode.UNAVAILABLE
        assert flaky.calls == 3
    finally:
        await running.stop(0)
