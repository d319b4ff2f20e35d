"""The stores' one database API, on SQLite (the embedded default, a file path) and PostgreSQL (a
`postgresql://` URL): connections, real transactions, `?` placeholders on both, and versioned
migrations applied at start-up under a lock.

The API is synchronous: domain code calls stores synchronously, so on PostgreSQL the event loop
waits out each round trip to the server (see the README's PostgreSQL section).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

Dialect = Literal["sqlite", "postgres"]
Row = dict[str, Any]
Params = Sequence[object]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_MIGRATION_FILE = re.compile(r"(\d+)_(\w+)\.sql")


class IntegrityError(Exception):
    """A constraint (unique, check, foreign key) refused a write, on either backend."""


@dataclass(frozen=True)
class Result:
    rows: list[Row]
    rowcount: int

    def one(self) -> Row | None:
        return self.rows[0] if self.rows else None


@dataclass(frozen=True)
class Migrations:
    """A component's schema history: `<directory>/<dialect>/NNNN_<name>.sql`, applied in order
    once each and recorded in `schema_migrations` under the component's name."""

    component: str
    directory: Path

    def scripts(self, dialect: Dialect) -> list[tuple[int, str, str]]:
        found = []
        for path in sorted((self.directory / dialect).glob("*.sql")):
            match = _MIGRATION_FILE.fullmatch(path.name)
            if match is None:
                raise ValueError(f"{path}: migration files are named NNNN_name.sql")
            found.append((int(match.group(1)), match.group(2), path.read_text()))
        return found


class Database(Protocol):
    dialect: Dialect

    @property
    def in_transaction(self) -> bool: ...

    @property
    def row_lock(self) -> str:
        """A clause for a SELECT inside a transaction that reads rows it will update: `FOR
        UPDATE` on PostgreSQL (READ COMMITTED would let two writers act on the same read);
        nothing on SQLite, whose transactions already hold the database's one write lock."""
        ...

    def execute(self, sql: str, params: Params = ()) -> Result: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction; statements inside it join it, and so does a nested one."""
        ...

    def lock_until_commit(self, name: str) -> None:
        """Inside a transaction: make other transactions taking the same lock wait until this
        one ends, so they commit in the order they took it."""
        ...

    def migrate(self, migrations: Migrations) -> None: ...

    def close(self) -> None: ...


def connect(target: str, *migrations: Migrations, pool_size: int = 4) -> Database:
    """Open `target` (a `postgresql://` URL, else an SQLite path or `:memory:`) and bring its
    schema up to date with `migrations`."""
    database: Database
    if target.startswith(POSTGRES_SCHEMES):
        database = PostgresDatabase(target, pool_size)
    else:
        database = SqliteDatabase(target)
    try:
        for component in migrations:
            database.migrate(component)
    except BaseException:
        database.close()
        raise
    return database


_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_time TEXT NOT NULL,
    PRIMARY KEY (component, version)
)
"""


def _applied_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


class SqliteDatabase:
    dialect: Dialect = "sqlite"
    row_lock = ""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = _dict_row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # Several processes may share a file (the orders canary): wait for a lock, do not fail.
        self._db.execute("PRAGMA busy_timeout=5000")

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql: str, params: Params = ()) -> Result:
        try:
            cursor = self._db.execute(sql, params)
        except sqlite3.IntegrityError as error:
            raise IntegrityError(str(error)) from error
        rows = cursor.fetchall() if cursor.description else []
        return Result(rows, cursor.rowcount)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.IntegrityError as error:
            raise IntegrityError(str(error)) from error

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._db.in_transaction:
            yield
            return
        # IMMEDIATE takes the write lock up front, so a check-then-update is never interleaved
        # with another process writing the same file.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def lock_until_commit(self, name: str) -> None:
        assert self._db.in_transaction, "lock_until_commit needs a transaction"

    def migrate(self, migrations: Migrations) -> None:
        # One IMMEDIATE transaction: a second process starting now waits, then finds it done.
        with self.transaction():
            self._db.execute(_SCHEMA_MIGRATIONS)
            done = {
                row["version"]
                for row in self._db.execute(
                    "SELECT version FROM schema_migrations WHERE component = ?",
                    (migrations.component,),
                )
            }
            for version, name, script in migrations.scripts(self.dialect):
                if version in done:
                    continue
                # executescript would commit the open transaction first: run statement by statement.
                for statement in _sqlite_statements(script):
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                    (migrations.component, version, name, _applied_time()),
                )

    def close(self) -> None:
        self._db.close()


def _sqlite_statements(script: str) -> Iterator[str]:
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending


@cache
def _postgres_sql(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (so a literal `%` doubles). Store SQL never has a `?`
    inside a string literal."""
    return sql.replace("%", "%%").replace("?", "%s")


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


_MIGRATION_LOCK = _lock_key("shop.schema_migrations")
Connection = psycopg.Connection[DictRow]


class PostgresDatabase:
    """A small pool of autocommit connections; a transaction pins one to the running context
    (thread or task), so the statements inside it, and only those, run on it."""

    dialect: Dialect = "postgres"

    def __init__(self, url: str, pool_size: int = 4, timeout: float = 30.0) -> None:
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            connection_class=Connection,
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            open=False,
        )
        self._pool.open(wait=True, timeout=timeout)
        self._pinned: ContextVar[Connection | None] = ContextVar("pinned", default=None)

    @property
    def in_transaction(self) -> bool:
        return self._pinned.get() is not None

    @property
    def row_lock(self) -> str:
        return " FOR UPDATE" if self.in_transaction else ""

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        pinned = self._pinned.get()
        if pinned is not None:
            yield pinned
        else:
            with self._pool.connection() as connection:
                yield connection

    def execute(self, sql: str, params: Params = ()) -> Result:
        with self._connection() as connection:
            try:
                cursor = connection.execute(_postgres_sql(sql), params)
            except psycopg.IntegrityError as error:
                raise IntegrityError(str(error)) from error
            rows = cursor.fetchall() if cursor.description else []
            return Result(rows, cursor.rowcount)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self._connection() as connection, connection.cursor() as cursor:
            try:
                cursor.executemany(_postgres_sql(sql), rows)
            except psycopg.IntegrityError as error:
                raise IntegrityError(str(error)) from error

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._pinned.get() is not None:
            yield
            return
        with self._pool.connection() as connection, connection.transaction():
            token = self._pinned.set(connection)
            try:
                yield
            finally:
                self._pinned.reset(token)

    def lock_until_commit(self, name: str) -> None:
        assert self.in_transaction, "lock_until_commit needs a transaction"
        self.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(name),))

    def migrate(self, migrations: Migrations) -> None:
        with self._pool.connection() as connection:
            # A session lock across the whole run: two processes starting together take turns,
            # and the second finds every migration recorded. CREATE TABLE IF NOT EXISTS is
            # itself not safe to race, so it runs under the lock too.
            connection.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
            try:
                connection.execute(_SCHEMA_MIGRATIONS)
                done = {
                    row["version"]
                    for row in connection.execute(
                        "SELECT version FROM schema_migrations WHERE component = %s",
                        (migrations.component,),
                    )
                }
                for version, name, script in migrations.scripts(self.dialect):
                    if version in done:
                        continue
                    with connection.transaction():
                        connection.execute(script)  # several statements, no parameters
                        connection.execute(
                            "INSERT INTO schema_migrations VALUES (%s, %s, %s, %s)",
                            (migrations.component, version, name, _applied_time()),
                        )
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))

    def close(self) -> None:
        self._pool.close()
