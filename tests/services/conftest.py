"""Fixtures for service tests: real grpc.aio servers on 127.0.0.1 port 0, in this process, and
a fresh database on each backend (SQLite and PostgreSQL) for the store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from services.runtime.database import connect
from services.runtime.server import Service, build_server
from services.runtime.settings import ServerSettings
from services.runtime.status import STATUS_DETAILS_KEY

T = TypeVar("T", error_details_pb2.BadRequest, error_details_pb2.ErrorInfo)
Serve = Callable[[Sequence[Service]], AbstractAsyncContextManager[aio.Channel]]
BACKENDS = ("sqlite", "postgres")


class Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


class Opened(Protocol):
    def __call__(self, store: C, /) -> C: ...


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: an SQLite file, or a new schema on the session's server."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("postgres").create_schema())


@pytest.fixture
async def opened() -> AsyncIterator[Opened]:
    """`opened(store)` closes the store after the test: on SQLite a store holds a worker
    thread, on PostgreSQL a pool of connections."""
    stores: list[Closable] = []

    def keep(store: C) -> C:
        stores.append(store)
        return store

    yield keep
    for store in reversed(stores):
        await store.close()


async def count_rows(database: str, table: str) -> int:
    """Rows in `table`, read on a connection of its own: what any process would see."""
    db = connect(database)
    try:
        row = (await db.execute(f"SELECT count(*) AS n FROM {table}")).one()
        assert row is not None
        return int(row["n"])
    finally:
        await db.close()


def server_settings(name: str = "test") -> ServerSettings:
    return ServerSettings.from_env(name, {"PORT": "0", "LOG_LEVEL": "WARNING"}, default_port=0)


@asynccontextmanager
async def serving(services: Sequence[Service]) -> AsyncIterator[aio.Channel]:
    """Start a server for `services` on a free port and yield a channel to it."""
    running = await build_server(server_settings(), services)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield channel
    finally:
        await running.stop(0)


@pytest.fixture
def serve() -> Serve:
    return serving


def field_violations(error: aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations carried in a rich error status, by field."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    return {
        v.field: v.description
        for v in _details(error, error_details_pb2.BadRequest)[0].field_violations
    }


def error_reason(error: aio.AioRpcError) -> str:
    """The ErrorInfo reason carried in a rich error status."""
    return str(_details(error, error_details_pb2.ErrorInfo)[0].reason)


def _details(error: aio.AioRpcError, kind: type[T]) -> list[T]:
    raw = dict(error.trailing_metadata() or ()).get(STATUS_DETAILS_KEY)
    assert raw, f"no status details in {error}"
    status = status_pb2.Status.FromString(raw)
    found: list[T] = []
    for any_detail in status.details:
        detail = kind()
        if any_detail.Unpack(detail):
            found.append(detail)
    assert found, f"no {kind.__name__} in {status}"
    return found
