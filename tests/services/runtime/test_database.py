"""The database layer on both backends: migrations once under a lock, the `?` dialect, real
transactions, outbox offsets that become visible in increasing order on PostgreSQL, and a slow
SQLite query that leaves the rest of the process running."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.catalog.demo import DEMO_PRODUCTS
from services.catalog.domain import Catalog
from services.catalog.servicer import CatalogServicer
from services.catalog.store import MIGRATIONS as CATALOG
from services.catalog.store import SqlCatalogStore
from services.notifications.store import MIGRATIONS as NOTIFICATIONS
from services.orders.settings import Settings as OrderSettings
from services.orders.store import MIGRATIONS as ORDERS
from services.payments.store import MIGRATIONS as PAYMENTS
from services.runtime.database import (
    Database,
    IntegrityError,
    Migrations,
    PostgresDatabase,
    SqliteDatabase,
    connect,
)
from services.runtime.outbox import MIGRATIONS as OUTBOX
from services.runtime.outbox import NewEvent, Outbox
from services.runtime.server import Service
from services.users.domain import Users
from services.users.servicer import UserServicer
from services.users.settings import Settings as UserSettings
from services.users.store import MIGRATIONS as USERS
from services.users.store import SqlUserStore
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.users.v1 import users_pb2, users_pb2_grpc
from tests.services.conftest import Opened, Serve
from tools.postgres import TempPostgres

EVERY = (USERS, CATALOG, PAYMENTS, ORDERS, NOTIFICATIONS, OUTBOX)


def cancelled(n: int) -> NewEvent:
    record = {
        "order_id": f"ord_{n}",
        "user_id": "usr_ann",
        "reason": "test",
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return NewEvent("shop.orders.OrderCancelled", f"ord_{n}", record)


@pytest.mark.parametrize("migrations", EVERY, ids=lambda m: m.component)
def test_each_backend_has_the_same_migration_versions(migrations: Migrations) -> None:
    sqlite = [(v, name) for v, name, _ in migrations.scripts("sqlite")]
    assert sqlite, f"no migrations for {migrations.component}"
    assert sqlite == [(v, name) for v, name, _ in migrations.scripts("postgres")]
    assert [v for v, _ in sqlite] == list(range(1, len(sqlite) + 1))


async def test_processes_starting_together_migrate_once(database: str, opened: Opened) -> None:
    # Separate connections, as separate processes would have; the lock makes them take turns.
    with ThreadPoolExecutor(6) as pool:
        databases = list(pool.map(lambda _: opened(connect(database, ORDERS, OUTBOX)), range(6)))
    result = await databases[0].execute(
        "SELECT component, version FROM schema_migrations ORDER BY component, version"
    )
    rows = result.rows
    assert [(r["component"], r["version"]) for r in rows] == [("orders", 1), ("outbox", 1)]


async def test_a_new_migration_is_applied_once_on_top(
    database: str, opened: Opened, tmp_path: Path
) -> None:
    versions = tmp_path / "migrations"
    for dialect in ("sqlite", "postgres"):
        (versions / dialect).mkdir(parents=True)
        (versions / dialect / "0001_init.sql").write_text("CREATE TABLE t (a INTEGER);\n")
    opened(connect(database, Migrations("t", versions)))
    for dialect in ("sqlite", "postgres"):
        (versions / dialect / "0002_b.sql").write_text(
            "-- a second step\nALTER TABLE t ADD COLUMN b INTEGER;\nINSERT INTO t VALUES (1, 2);\n"
        )
    db = opened(connect(database, Migrations("t", versions)))
    opened(connect(database, Migrations("t", versions)))
    assert (await db.execute("SELECT a, b FROM t")).rows == [{"a": 1, "b": 2}]


async def test_placeholders_and_percent_signs_mean_the_same_on_both(
    database: str, opened: Opened
) -> None:
    db = opened(connect(database))
    assert (await db.execute("SELECT ? || '%' AS x", ("50",))).one() == {"x": "50%"}


async def test_constraint_violations_are_one_error_and_roll_back(
    database: str, opened: Opened
) -> None:
    db = opened(connect(database))
    await db.execute("CREATE TABLE k (id TEXT PRIMARY KEY)")

    async def insert_twice() -> None:
        await db.execute("INSERT INTO k VALUES (?)", ("a",))
        await db.execute("INSERT INTO k VALUES (?)", ("a",))

    with pytest.raises(IntegrityError):
        await db.transaction(insert_twice)
    assert (await db.execute("SELECT count(*) AS n FROM k")).one() == {"n": 0}


async def test_an_sqlite_transaction_awaits_nothing_but_its_database(
    tmp_path: Path, opened: Opened
) -> None:
    # Its body runs whole on the database's thread, where nothing else could resume it.
    db = opened(connect(str(tmp_path / "t.db")))
    await db.execute("CREATE TABLE k (id TEXT)")

    async def insert_then_yield() -> None:
        await db.execute("INSERT INTO k VALUES (?)", ("a",))
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited something other than its database"):
        await db.transaction(insert_then_yield)
    assert (await db.execute("SELECT count(*) AS n FROM k")).one() == {"n": 0}


def test_database_url_wins_over_the_sqlite_path() -> None:
    url = "postgresql://shop@db:5432/users"
    assert UserSettings.from_env({}).database == "var/users.db"
    assert UserSettings.from_env({"DATABASE_PATH": "/x.db", "DATABASE_URL": url}).database == url
    env = {"USERS_ADDR": "u:1", "CATALOG_ADDR": "c:1", "PAYMENTS_ADDR": "p:1", "DATABASE_URL": url}
    assert OrderSettings.from_env(env).database == url


async def commit_while_another_is_open(first: Outbox, second: Outbox) -> tuple[list[str], bool]:
    """`first` appends and holds its transaction open while `second` appends and tries to
    commit. Returns what a reader saw at that moment and whether `second` had to wait."""
    done = asyncio.Event()

    async def write_second() -> None:
        await second.db.transaction(lambda: second.append([cancelled(2)]))
        done.set()

    writers: list[asyncio.Task[None]] = []

    async def write_first() -> tuple[list[str], bool]:
        await first.append([cancelled(1)])
        writers.append(asyncio.create_task(write_second()))
        try:
            await asyncio.wait_for(done.wait(), 0.5)
            waited = False
        except TimeoutError:
            waited = True
        # `second` reads outside any transaction of its own: what a reader sees.
        seen = [e.key for e in await second.after(0, 10)]
        return seen, waited

    # PostgreSQL only: there a transaction's body runs on the event loop, and may wait.
    seen, waited = await first.db.transaction(write_first)
    await asyncio.wait_for(writers[0], 10)
    return seen, waited


def two_writers(url: str, opened: Opened) -> tuple[Outbox, Outbox]:
    return Outbox(opened(connect(url))), Outbox(opened(connect(url)))


async def test_outbox_writers_commit_in_offset_order_on_postgres(
    postgres: TempPostgres, opened: Opened
) -> None:
    first, second = two_writers(postgres.create_schema(), opened)
    seen_meanwhile, waited = await commit_while_another_is_open(first, second)
    assert waited, "the second writer committed while the first held a lower offset"
    assert seen_meanwhile == []
    events = await first.after(0, 10)
    assert [e.key for e in events] == ["ord_1", "ord_2"]
    assert events[0].offset < events[1].offset


async def test_without_the_lock_a_reader_would_skip_an_event(
    postgres: TempPostgres, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: this is the failure the lock prevents.
    async def no_lock(self: PostgresDatabase, name: str) -> None:
        pass

    monkeypatch.setattr(PostgresDatabase, "lock_until_commit", no_lock)
    first, second = two_writers(postgres.create_schema(), opened)
    seen_meanwhile, waited = await commit_while_another_is_open(first, second)
    assert not waited
    assert seen_meanwhile == ["ord_2"]  # a reader acks past ord_2's offset now...
    late = (await first.after(0, 10))[0]
    later = (await second.after(0, 10))[1]
    assert late.key == "ord_1" and late.offset < later.offset  # ...and skips this


async def test_many_racing_writers_lose_nothing_for_a_polling_reader(
    database: str, opened: Opened
) -> None:
    writers = [Outbox(opened(connect(database))) for _ in range(4)]
    reader: Database = opened(connect(database))
    outbox = Outbox(reader)
    stop = asyncio.Event()
    seen: list[str] = []

    async def read() -> None:
        offset = 0
        while not stop.is_set() or await outbox.after(offset, 1):
            batch = await outbox.after(offset, 100)
            for event in batch:
                seen.append(event.key)
                offset = event.offset
            if not batch:
                await asyncio.sleep(0.001)

    async def write(index: int) -> None:
        outbox = writers[index]

        async def append(n: int) -> None:
            await outbox.append([cancelled(index * 100 + n)])
            # Hold the transaction open, so commits interleave. (On SQLite a transaction runs
            # whole on its connection's thread; the four connections still race.)
            if outbox.db.dialect == "postgres":
                await asyncio.sleep(0.001)

        for n in range(15):
            await outbox.db.transaction(functools.partial(append, n))

    poller = asyncio.create_task(read())
    await asyncio.gather(*(write(index) for index in range(4)))
    stop.set()
    await asyncio.wait_for(poller, 30)
    assert sorted(seen) == sorted(f"ord_{i * 100 + n}" for i in range(4) for n in range(15))


@contextmanager
def gate() -> Iterator[tuple[Callable[[str], int], threading.Event, threading.Event]]:
    """An SQLite function that blocks its query until the test opens the gate: a slow query
    whose end the test decides, so nothing depends on timing."""
    entered, release = threading.Event(), threading.Event()

    def wait(value: str) -> int:
        if value == "slow":
            entered.set()
            release.wait(30)
        return 1

    try:
        yield wait, entered, release
    finally:
        release.set()


async def test_a_slow_query_leaves_the_event_loop_free(tmp_path: Path, opened: Opened) -> None:
    slow = opened(connect(str(tmp_path / "slow.db")))
    other = opened(connect(str(tmp_path / "other.db")))
    assert isinstance(slow, SqliteDatabase)
    with gate() as (wait, entered, release):
        await slow.run(lambda connection: connection.create_function("gate", 1, wait))
        stuck = asyncio.create_task(slow.execute("SELECT gate('slow') AS x"))
        await asyncio.to_thread(entered.wait, 30)  # the query runs on the database's thread
        # Meanwhile the loop runs other work, here a query of another database.
        assert (await other.execute("SELECT 1 AS x")).one() == {"x": 1}
        assert not stuck.done()
        release.set()
        assert (await stuck).one() == {"x": 1}


async def test_a_slow_query_in_one_call_does_not_stall_the_process(serve: Serve) -> None:
    # One process serving the catalog and users; the catalog's product read is made slow by a
    # view that shadows its table on its connection and calls the gate for one product.
    store = SqlCatalogStore(":memory:")
    catalog = Catalog(store)
    await catalog.seed(DEMO_PRODUCTS)
    users = Users(SqlUserStore(":memory:"))
    ann = await users.create("ann@example.com", "Ann")
    services = [
        Service(
            "shop.catalog.v1.CatalogService",
            catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
            CatalogServicer(catalog),
        ),
        Service(
            "shop.users.v1.UserService",
            users_pb2_grpc.add_UserServiceServicer_to_server,
            UserServicer(users),
        ),
    ]
    database = store._db
    assert isinstance(database, SqliteDatabase)
    with gate() as (wait, entered, release):

        def install(connection: sqlite3.Connection) -> None:
            connection.create_function("gate", 1, wait)
            connection.execute(
                "CREATE TEMP VIEW products AS"
                " SELECT * FROM main.products WHERE gate(CASE product_id"
                " WHEN 'sku-espresso' THEN 'slow' ELSE product_id END)"
            )

        await database.run(install)
        async with serve(services) as channel:
            products = catalog_pb2_grpc.CatalogServiceStub(channel)
            stuck = asyncio.ensure_future(
                products.GetProduct(catalog_pb2.GetProductRequest(product_id="sku-espresso"))
            )
            await asyncio.to_thread(entered.wait, 30)
            # While GetProduct waits for its query, calls that need no catalog query answer.
            got = await users_pb2_grpc.UserServiceStub(channel).GetUser(
                users_pb2.GetUserRequest(user_id=ann.user_id)
            )
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
            assert got.user.email == "ann@example.com"
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert not stuck.done()
            release.set()
            assert (await stuck).product.product_id == "sku-espresso"
