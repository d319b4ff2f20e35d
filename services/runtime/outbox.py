"""The transactional outbox: events written in the same SQLite transaction as the state change
they announce, read back in commit order by the event stream. grpc-free.

SQLite serialises writers, so offsets (the table's rowid) become visible in increasing order: a
reader that has seen offset N never later finds a new event below N.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import propagate

from contracts.schemas import Registry, default_registry, encode

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    offset INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    headers TEXT NOT NULL,
    create_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_consumers (
    consumer TEXT PRIMARY KEY,
    acked_offset INTEGER NOT NULL,
    ack_time REAL NOT NULL
);
"""

# Another process sharing the database (the orders canary) commits without waking our readers.
CROSS_PROCESS_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class NewEvent:
    """An event to publish: its subject, partition key and the record, as the newest schema."""

    subject: str
    key: str
    record: Mapping[str, Any]


@dataclass(frozen=True)
class StoredEvent:
    offset: int
    event_id: str
    subject: str
    key: str
    payload: bytes
    headers: Mapping[str, str]
    create_time: datetime


@dataclass
class Outbox:
    """One service's outbox table. `append` joins the caller's open transaction."""

    db: sqlite3.Connection
    registry: Registry = field(default_factory=default_registry)
    new_id: Callable[[], str] = lambda: f"evt_{uuid.uuid4().hex}"
    poll_seconds: float = CROSS_PROCESS_POLL_SECONDS
    _waiters: set[asyncio.Event] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.db.executescript(SCHEMA)

    def append(self, events: Iterable[NewEvent]) -> None:
        """Write `events`; call inside the transaction that makes the change they announce."""
        assert self.db.in_transaction, "outbox events must join the state change's transaction"
        headers: dict[str, str] = {}
        propagate.inject(headers)  # the current trace continues in the consumers
        rows = [
            (
                self.new_id(),
                event.subject,
                event.key,
                encode(self.registry.subject(event.subject).latest, event.record),
                json.dumps(headers, sort_keys=True),
                time.time(),
            )
            for event in events
        ]
        self.db.executemany(
            "INSERT INTO outbox (event_id, subject, key, payload, headers, create_time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        if rows:
            # Readers run on this thread's event loop, so they wake after the commit.
            self.wake()

    def after(self, offset: int, limit: int, subjects: Sequence[str] = ()) -> list[StoredEvent]:
        """Events with an offset above `offset`, oldest first, at most `limit`."""
        where = "offset > ?"
        args: list[object] = [offset]
        if subjects:
            where += f" AND subject IN ({', '.join('?' * len(subjects))})"
            args.extend(subjects)
        rows = self.db.execute(
            "SELECT offset, event_id, subject, key, payload, headers, create_time FROM outbox"
            f" WHERE {where} ORDER BY offset LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [
            StoredEvent(
                row[0],
                row[1],
                row[2],
                row[3],
                bytes(row[4]),
                json.loads(row[5]),
                datetime.fromtimestamp(row[6], UTC),
            )
            for row in rows
        ]

    def wake(self) -> None:
        """Wake every reader waiting in `wait`."""
        for waiter in self._waiters:
            waiter.set()

    async def wait(self) -> None:
        """Until an event is appended in this process, or one poll interval passes."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter.wait(), self.poll_seconds)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    def acked(self, consumer: str) -> int:
        """`consumer`'s committed offset (0 before its first ack)."""
        row = self.db.execute(
            "SELECT acked_offset FROM outbox_consumers WHERE consumer = ?", (consumer,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def ack(self, consumer: str, offset: int) -> int:
        """Record `consumer`'s progress (never backwards); returns its committed offset."""
        self.db.execute(
            "INSERT INTO outbox_consumers (consumer, acked_offset, ack_time) VALUES (?, ?, ?)"
            " ON CONFLICT (consumer) DO UPDATE SET"
            " acked_offset = max(acked_offset, excluded.acked_offset),"
            " ack_time = excluded.ack_time",
            (consumer, offset, time.time()),
        )
        return self.acked(consumer)
