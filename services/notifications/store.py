"""SQL storage for the feed, on SQLite or PostgreSQL: notifications, the event ids applied (the
inbox), each source's offset and the events set aside, all changed together so a redelivered
event adds nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from services.notifications.domain import Notification
from services.runtime.database import Migrations, Row, connect

MIGRATIONS = Migrations("notifications", Path(__file__).parent / "migrations")


def _sortable(moment: datetime) -> str:
    # One zone and a fixed width make the text order the time order.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _notification(row: Row) -> Notification:
    return Notification(
        row["notification_id"],
        row["user_id"],
        row["subject"],
        row["body"],
        datetime.fromisoformat(row["create_time"]),
    )


class SqlNotificationStore:
    def __init__(self, database: str) -> None:
        self._db = connect(database, MIGRATIONS)

    async def add(self, notification: Notification) -> None:
        await self._insert(notification)

    async def _insert(self, notification: Notification) -> None:
        await self._db.execute(
            "INSERT INTO notifications (notification_id, user_id, subject, body, create_time)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (notification_id) DO NOTHING",
            (
                notification.notification_id,
                notification.user_id,
                notification.subject,
                notification.body,
                _sortable(notification.create_time),
            ),
        )

    async def list_for_user(self, user_id: str, offset: int, limit: int) -> list[Notification]:
        rows = (
            await self._db.execute(
                "SELECT * FROM notifications WHERE user_id = ?"
                " ORDER BY create_time DESC, notification_id DESC LIMIT ? OFFSET ?",
                (user_id, limit, offset),
            )
        ).rows
        return [_notification(row) for row in rows]

    async def applied_offset(self, source: str) -> int:
        row = (
            await self._db.execute(
                'SELECT "offset" FROM source_offsets WHERE source = ?', (source,)
            )
        ).one()
        return 0 if row is None else int(row["offset"])

    async def apply(
        self, source: str, offset: int, event_id: str, notification: Notification | None
    ) -> bool:
        async def record() -> int:
            new = (
                await self._db.execute(
                    'INSERT INTO applied_events (event_id, source, "offset", applied_time)'
                    " VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                    (event_id, source, offset, time.time()),
                )
            ).rowcount
            if new and notification is not None:
                await self._insert(notification)
            await self._advance(source, offset)
            return new

        return bool(await self._db.transaction(record))

    async def set_aside(
        self, source: str, offset: int, event_id: str, subject: str, payload: bytes, reason: str
    ) -> None:
        async def keep() -> None:
            await self._db.execute(
                'INSERT INTO dead_letters (source, "offset", event_id, subject, payload, reason)'
                ' VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, "offset") DO NOTHING',
                (source, offset, event_id, subject, payload, reason),
            )
            await self._advance(source, offset)

        await self._db.transaction(keep)

    async def _advance(self, source: str, offset: int) -> None:
        await self._db.execute(
            'INSERT INTO source_offsets (source, "offset") VALUES (?, ?)'
            ' ON CONFLICT (source) DO UPDATE SET "offset" = CASE'
            ' WHEN excluded."offset" > source_offsets."offset" THEN excluded."offset"'
            ' ELSE source_offsets."offset" END',
            (source, offset),
        )

    async def close(self) -> None:
        await self._db.close()
