"""The database layer on both backends: migrations once under a lock, the `?` dialect, real
transactions, and outbox offsets that become visible in increasing order on PostgreSQL."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.catalog.store import MIGRATIONS as CATALOG
from services.notifications.store import MIGRATIONS as NOTIFICATIONS
from services.orders.settings import Settings as OrderSettings
from services.orders.store import MIGRATIONS as ORDERS
from services.payments.store import MIGRATIONS as PAYMENTS
from services.runtime.database import (
    Database,
    IntegrityError,
    Migrations,
    PostgresDatabase,
    connect,
)
from services.runtime.outbox import MIGRATIONS as OUTBOX
from services.runtime.outbox import NewEvent, Outbox
from services.users.settings import Settings as UserSettings
from services.users.store import MIGRATIONS as USERS
from tests.services.conftest import Opened
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


def test_processes_starting_together_migrate_once(database: str, opened: Opened) -> None:
    # Separate connections, as separate processes would have; the lock makes them take turns.
    with ThreadPoolExecutor(6) as pool:
        databases = list(pool.map(lambda _: opened(connect(database, ORDERS, OUTBOX)), range(6)))
    rows = (
        databases[0]
        .execute("SELECT component, version FROM schema_migrations ORDER BY component, version")
        .rows
    )
    assert [(r["component"], r["version"]) for r in rows] == [("orders", 1), ("outbox", 1)]


def test_a_new_migration_is_applied_once_on_top(
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
    assert db.execute("SELECT a, b FROM t").rows == [{"a": 1, "b": 2}]


def test_placeholders_and_percent_signs_mean_the_same_on_both(
    database: str, opened: Opened
) -> None:
    db = opened(connect(database))
    assert db.execute("SELECT ? || '%' AS x", ("50",)).one() == {"x": "50%"}


def test_constraint_violations_are_one_error_and_roll_back(database: str, opened: Opened) -> None:
    db = opened(connect(database))
    db.execute("CREATE TABLE k (id TEXT PRIMARY KEY)")
    with pytest.raises(IntegrityError), db.transaction():
        db.execute("INSERT INTO k VALUES (?)", ("a",))
        db.execute("INSERT INTO k VALUES (?)", ("a",))
    assert db.execute("SELECT count(*) AS n FROM k").one() == {"n": 0}


def test_database_url_wins_over_the_sqlite_path() -> None:
    url = "postgresql://shop@db:5432/users"
    assert UserSettings.from_env({}).database == "var/users.db"
    assert UserSettings.from_env({"DATABASE_PATH": "/x.db", "DATABASE_URL": url}).database == url
    env = {"USERS_ADDR": "u:1", "CATALOG_ADDR": "c:1", "PAYMENTS_ADDR": "p:1", "DATABASE_URL": url}
    assert OrderSettings.from_env(env).database == url


def commit_while_another_is_open(first: Outbox, second: Outbox) -> tuple[list[str], bool]:
    """`first` appends and holds its transaction open while `second` appends and tries to
    commit. Returns what a reader saw at that moment and whether `second` had to wait."""
    done = threading.Event()

    def write_second() -> None:
        with second.db.transaction():
            second.append([cancelled(2)])
        done.set()

    with first.db.transaction():
        first.append([cancelled(1)])
        writer = threading.Thread(target=write_second)
        writer.start()
        waited = not done.wait(0.5)
        # `second` reads outside any transaction of this thread: what a reader sees.
        seen = [e.key for e in second.after(0, 10)]
    writer.join(10)
    return seen, waited


def two_writers(url: str, opened: Opened) -> tuple[Outbox, Outbox]:
    return Outbox(opened(connect(url))), Outbox(opened(connect(url)))


def test_outbox_writers_commit_in_offset_order_on_postgres(
    postgres: TempPostgres, opened: Opened
) -> None:
    first, second = two_writers(postgres.create_schema(), opened)
    seen_meanwhile, waited = commit_while_another_is_open(first, second)
    assert waited, "the second writer committed while the first held a lower offset"
    assert seen_meanwhile == []
    events = first.after(0, 10)
    assert [e.key for e in events] == ["ord_1", "ord_2"]
    assert events[0].offset < events[1].offset


def test_without_the_lock_a_reader_would_skip_an_event(
    postgres: TempPostgres, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: this is the failure the lock prevents.
    monkeypatch.setattr(PostgresDatabase, "lock_until_commit", lambda self, name: None)
    first, second = two_writers(postgres.create_schema(), opened)
    seen_meanwhile, waited = commit_while_another_is_open(first, second)
    assert not waited
    assert seen_meanwhile == ["ord_2"]  # a reader acks past ord_2's offset now...
    late = first.after(0, 10)[0]
    assert late.key == "ord_1" and late.offset < second.after(0, 10)[1].offset  # ...and skips this


def test_many_racing_writers_lose_nothing_for_a_polling_reader(
    database: str, opened: Opened
) -> None:
    writers = [Outbox(opened(connect(database))) for _ in range(4)]
    reader: Database = opened(connect(database))
    outbox = Outbox(reader)
    stop = threading.Event()
    seen: list[str] = []

    def read() -> None:
        offset = 0
        while not stop.is_set() or outbox.after(offset, 1):
            batch = outbox.after(offset, 100)
            for event in batch:
                seen.append(event.key)
                offset = event.offset
            if not batch:
                time.sleep(0.001)

    def write(index: int) -> None:
        for n in range(15):
            with writers[index].db.transaction():
                writers[index].append([cancelled(index * 100 + n)])
                time.sleep(0.001)  # hold the transaction open, so commits interleave

    poller = threading.Thread(target=read)
    poller.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    stop.set()
    poller.join(30)
    assert sorted(seen) == sorted(f"ord_{i * 100 + n}" for i in range(4) for n in range(15))
