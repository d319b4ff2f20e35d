"""The stores' one database API, on SQLite (the embedded default, a file path) and PostgreSQL (a
`postgresql://` URL): connections, real transactions, `?` placeholders on both, and versioned
migrations applied at start-up under a lock.

The API is asynchronous and no statement runs on the event loop's thread, so a slow query delays
only the calls waiting for the same database. SQLite's connection lives on a worker thread of its
own (one per database), which runs one unit of work at a time: a statement, or a whole
transaction, whose body runs there in one go (SQLite serialises writers anyway, and a lock is
held no longer than the work). PostgreSQL uses psycopg's async connection pool. Migrations run
synchronously at start-up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import hashlib
import queue
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

Dialect = Literal["sqlite", "postgres"]
Row = dict[str, Any]
Params = Sequence[object]
T = TypeVar("T")

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
    def in_transaction(self) -> bool:
        """Whether the running code is inside the body of one of this database's transactions."""
        ...

    @property
    def row_lock(self) -> str:
        """A clause for a SELECT inside a transaction that reads rows it will update: `FOR
        UPDATE` on PostgreSQL (READ COMMITTED would let two writers act on the same read);
        nothing on SQLite, whose transactions already hold the database's one write lock."""
        ...

    async def execute(self, sql: str, params: Params = ()) -> Result: ...

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    async def transaction(self, body: Callable[[], Awaitable[T]]) -> T:
        """`await body()` as one write transaction, committed if it returns and rolled back if
        it raises; the statements inside it join it, and so does a nested transaction. `body`
        awaits nothing but this database: on SQLite it runs whole on the database's thread."""
        ...

    async def lock_until_commit(self, name: str) -> None:
        """Inside a transaction: make other transactions taking the same lock wait until this
        one ends, so they commit in the order they took it."""
        ...

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Inside a transaction: call `callback` (on the event loop) once it has committed."""
        ...

    def migrate(self, migrations: Migrations) -> None:
        """Apply `migrations` now, blocking: for start-up, before the service serves."""
        ...

    async def close(self) -> None: ...


def connect(target: str, *migrations: Migrations, pool_size: int = 4) -> Database:
    """Open `target` (a `postgresql://` URL, else an SQLite path or `:memory:`) and bring its
    schema up to date with `migrations` (blocking: call it at start-up)."""
    if target.startswith(POSTGRES_SCHEMES):
        # Its pool opens on first use, inside the event loop: nothing to close if this fails.
        postgres = PostgresDatabase(target, pool_size)
        for component in migrations:
            postgres.migrate(component)
        return postgres
    sqlite = SqliteDatabase(target)
    try:
        for component in migrations:
            sqlite.migrate(component)
    except BaseException:
        sqlite.shut_down()
        raise
    return sqlite


@dataclass
class _Transaction:
    """The running task's open transaction: its connection (PostgreSQL) and what to call once
    it commits."""

    connection: Any = None
    on_commit: list[Callable[[], None]] = field(default_factory=list)

    def committed(self) -> None:
        for callback in self.on_commit:
            callback()


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


def _open_sqlite(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = _dict_row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    # Several processes may share a file (the orders canary): wait for a lock, do not fail.
    db.execute("PRAGMA busy_timeout=5000")
    return db


class _Worker:
    """A thread of its own that owns one sqlite3 connection (a connection belongs to the thread
    that made it) and runs the jobs it is given, one at a time and in order."""

    def __init__(self, path: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=f"sqlite {path}", daemon=True)
        self._thread.start()
        self.db = self.wait(lambda: _open_sqlite(path))

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` on the thread, for the event loop. The job is queued before this first
        yields; if the caller is cancelled, the job still runs, in its turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result: T | None = work()
                error: BaseException | None = None
            except BaseException as failure:  # handed to the awaiting task, which re-raises it
                result, error = None, failure
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, future, result, error)

        self._jobs.put(job)
        return await future

    def wait(self, work: Callable[[], T]) -> T:
        """`work()` on the thread, blocking the caller: for start-up and shutdown."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            try:
                future.set_result(work())
            except BaseException as error:
                future.set_exception(error)

        self._jobs.put(job)
        return future.result()

    def stop(self) -> None:
        self._jobs.put(None)


def _settle(future: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def _complete(step: Awaitable[T]) -> T:
    """Run a transaction's body to its end on the worker thread: each statement it awaits runs
    there at once, so it never suspends, unless it awaits something else, which is refused."""
    coroutine = step.__await__()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coroutine.close()
    raise RuntimeError("an SQLite transaction awaited something other than its database")


class SqliteDatabase:
    """One connection, owned by a worker thread that runs every statement: the event loop only
    waits for results."""

    dialect: Dialect = "sqlite"
    row_lock = ""

    def __init__(self, path: str) -> None:
        self._worker = _Worker(path)
        self._db = self._worker.db
        self._transaction: ContextVar[_Transaction | None] = ContextVar(
            "sqlite_transaction", default=None
        )

    @property
    def in_transaction(self) -> bool:
        return self._transaction.get() is not None

    async def _unit(self, work: Callable[[], T]) -> T:
        """`work` on the worker: right away inside a transaction's body (which runs there), else
        queued behind the units before it."""
        if self._worker.is_current():
            return work()
        return await self._worker.run(work)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the worker thread, as a unit of work: for what the API has no
        call for (a user-defined function, a backup)."""
        return await self._unit(lambda: work(self._db))

    def _execute(self, sql: str, params: Params) -> Result:
        try:
            cursor = self._db.execute(sql, params)
        except sqlite3.IntegrityError as error:
            raise IntegrityError(str(error)) from error
        rows = cursor.fetchall() if cursor.description else []
        return Result(rows, cursor.rowcount)

    async def execute(self, sql: str, params: Params = ()) -> Result:
        return await self._unit(lambda: self._execute(sql, params))

    def _executemany(self, sql: str, rows: list[Params]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.IntegrityError as error:
            raise IntegrityError(str(error)) from error

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        batch = list(rows)
        await self._unit(lambda: self._executemany(sql, batch))

    async def transaction(self, body: Callable[[], Awaitable[T]]) -> T:
        if self.in_transaction:
            return await body()
        state = _Transaction()
        # The body runs in (a copy of) the caller's context: its trace continues in the outbox.
        context = contextvars.copy_context()
        result = await self._worker.run(lambda: context.run(self._transact, state, body))
        state.committed()
        return result

    def _transact(self, state: _Transaction, body: Callable[[], Awaitable[T]]) -> T:
        """On the worker: the whole transaction, in one go."""
        self._transaction.set(state)
        # IMMEDIATE takes the write lock up front, so a check-then-update is never interleaved
        # with another process writing the same file.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = _complete(body())
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return result

    async def lock_until_commit(self, name: str) -> None:
        assert self.in_transaction, "lock_until_commit needs a transaction"

    def after_commit(self, callback: Callable[[], None]) -> None:
        state = self._transaction.get()
        assert state is not None, "after_commit needs a transaction"
        state.on_commit.append(callback)

    def _migrate(self, migrations: Migrations) -> None:
        # One IMMEDIATE transaction: a second process starting now waits, then finds it done.
        self._db.execute("BEGIN IMMEDIATE")
        try:
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
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def migrate(self, migrations: Migrations) -> None:
        self._worker.wait(lambda: self._migrate(migrations))

    def shut_down(self) -> None:
        """Close the connection and stop the worker, blocking."""
        self._worker.wait(self._db.close)
        self._worker.stop()

    async def close(self) -> None:
        await self._worker.run(self._db.close)
        self._worker.stop()


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
Connection = psycopg.AsyncConnection[DictRow]


class PostgresDatabase:
    """A small async pool of autocommit connections; a transaction pins one to the running
    task, so the statements inside it, and only those, run on it."""

    dialect: Dialect = "postgres"

    def __init__(self, url: str, pool_size: int = 4, timeout: float = 30.0) -> None:
        self._url = url
        # Opened on first use: an async pool belongs to the event loop that opens it.
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            connection_class=Connection,
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            open=False,
        )
        self._opened = False
        self._transaction: ContextVar[_Transaction | None] = ContextVar(
            "postgres_transaction", default=None
        )

    @property
    def in_transaction(self) -> bool:
        return self._transaction.get() is not None

    @property
    def row_lock(self) -> str:
        return " FOR UPDATE" if self.in_transaction else ""

    async def _open(self) -> AsyncConnectionPool[Connection]:
        if not self._opened:
            await self._pool.open()  # safe to repeat, so racing first calls are fine
            self._opened = True
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        state = self._transaction.get()
        if state is not None:
            yield state.connection
        else:
            async with (await self._open()).connection() as connection:
                yield connection

    async def execute(self, sql: str, params: Params = ()) -> Result:
        async with self._connection() as connection:
            try:
                cursor = await connection.execute(_postgres_sql(sql), params)
            except psycopg.IntegrityError as error:
                raise IntegrityError(str(error)) from error
            rows = await cursor.fetchall() if cursor.description else []
            return Result(rows, cursor.rowcount)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        async with self._connection() as connection, connection.cursor() as cursor:
            try:
                await cursor.executemany(_postgres_sql(sql), rows)
            except psycopg.IntegrityError as error:
                raise IntegrityError(str(error)) from error

    async def transaction(self, body: Callable[[], Awaitable[T]]) -> T:
        if self.in_transaction:
            return await body()
        pool = await self._open()
        async with pool.connection() as connection:
            state = _Transaction(connection)
            async with connection.transaction():
                token = self._transaction.set(state)
                try:
                    result = await body()
                finally:
                    self._transaction.reset(token)
        state.committed()
        return result

    async def lock_until_commit(self, name: str) -> None:
        assert self.in_transaction, "lock_until_commit needs a transaction"
        await self.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(name),))

    def after_commit(self, callback: Callable[[], None]) -> None:
        state = self._transaction.get()
        assert state is not None, "after_commit needs a transaction"
        state.on_commit.append(callback)

    def migrate(self, migrations: Migrations) -> None:
        # A connection of its own, outside the pool (which opens in the event loop, later).
        with psycopg.connect(self._url, autocommit=True, row_factory=dict_row) as connection:
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

    async def close(self) -> None:
        await self._pool.close()
