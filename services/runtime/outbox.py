"""The transactional outbox: events written in the same transaction as the state change they
announce, read back in commit order by the event stream. grpc-free.

Offsets must become visible in increasing order: a reader that has seen offset N must never later
find a new event below N. SQLite serialises writers, so its rowids do. PostgreSQL hands out
identity values at INSERT time and transactions may commit in another order, so `append` takes a
transaction-scoped lock first: event-writing transactions then take offsets and commit in turn.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import propagate

from contracts.schemas import Registry, default_registry, encode
from services.runtime.database import Database, Migrations

MIGRATIONS = Migrations("outbox", Path(__file__).parent / "migrations" / "outbox")

# Another process sharing the database (a second worker, the orders canary) commits without
# waking our readers; this bounds the lag of its events. An indexed read costs ~0.1 ms.
CROSS_PROCESS_POLL_SECONDS = 0.05


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

    db: Database
    registry: Registry = field(default_factory=default_registry)
    new_id: Callable[[], str] = lambda: f"evt_{uuid.uuid4().hex}"
    poll_seconds: float = CROSS_PROCESS_POLL_SECONDS
    _waiters: set[asyncio.Event] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.db.migrate(MIGRATIONS)

    async def append(self, events: Iterable[NewEvent]) -> None:
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
        if not rows:
            return  # a change that announces nothing takes no lock
        # Held until commit (a no-op on SQLite): offsets are taken and committed in turn.
        await self.db.lock_until_commit("shop.outbox")
        await self.db.executemany(
            "INSERT INTO outbox (event_id, subject, key, payload, headers, create_time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        self.db.after_commit(self.wake)

    async def after(
        self, offset: int, limit: int, subjects: Sequence[str] = ()
    ) -> list[StoredEvent]:
        """Events with an offset above `offset`, oldest first, at most `limit`."""
        where = '"offset" > ?'
        args: list[object] = [offset]
        if subjects:
            where += f" AND subject IN ({', '.join('?' * len(subjects))})"
            args.extend(subjects)
        rows = (
            await self.db.execute(
                'SELECT "offset", event_id, subject, key, payload, headers, create_time FROM outbox'
                f' WHERE {where} ORDER BY "offset" LIMIT ?',
                (*args, limit),
            )
        ).rows
        return [
            StoredEvent(
                row["offset"],
                row["event_id"],
                row["subject"],
                row["key"],
                bytes(row["payload"]),
                json.loads(row["headers"]),
                datetime.fromtimestamp(row["create_time"], UTC),
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

    async def acked(self, consumer: str) -> int:
        """`consumer`'s committed offset (0 before its first ack)."""
        row = (
            await self.db.execute(
                "SELECT acked_offset FROM outbox_consumers WHERE consumer = ?", (consumer,)
            )
        ).one()
        return 0 if row is None else int(row["acked_offset"])

    async def ack(self, consumer: str, offset: int) -> int:
        """Record `consumer`'s progress (never backwards); returns its committed offset."""
        await self.db.execute(
            "INSERT INTO outbox_consumers (consumer, acked_offset, ack_time) VALUES (?, ?, ?)"
            " ON CONFLICT (consumer) DO UPDATE SET"
            " acked_offset = CASE WHEN excluded.acked_offset > outbox_consumers.acked_offset"
            " THEN excluded.acked_offset ELSE outbox_consumers.acked_offset END,"
            " ack_time = excluded.ack_time",
            (consumer, offset, time.time()),
        )
        return await self.acked(consumer)
