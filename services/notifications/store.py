"""SQLite storage for the feed: notifications, the event ids applied (the inbox), each source's
offset and the events set aside, all changed together so a redelivered event adds nothing."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

from services.notifications.domain import Notification
from services.runtime.sqlite import connect, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    notification_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    create_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_user
    ON notifications (user_id, create_time DESC, notification_id DESC);
CREATE TABLE IF NOT EXISTS applied_events (
    event_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    offset INTEGER NOT NULL,
    -- When it was applied: with the producer's commit time, the event's end-to-end lag.
    applied_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS source_offsets (
    source TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    source TEXT NOT NULL,
    offset INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (source, offset)
);
"""


def _sortable(moment: datetime) -> str:
    # One zone and a fixed width make the text order the time order.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _notification(row: sqlite3.Row) -> Notification:
    return Notification(
        row["notification_id"],
        row["user_id"],
        row["subject"],
        row["body"],
        datetime.fromisoformat(row["create_time"]),
    )


class SqliteNotificationStore:
    def __init__(self, path: str) -> None:
        self._db = connect(path, SCHEMA)

    def add(self, notification: Notification) -> None:
        self._insert(notification)

    def _insert(self, notification: Notification) -> None:
        self._db.execute(
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

    def list_for_user(self, user_id: str, offset: int, limit: int) -> list[Notification]:
        rows = self._db.execute(
            "SELECT * FROM notifications WHERE user_id = ?"
            " ORDER BY create_time DESC, notification_id DESC LIMIT ? OFFSET ?",
            (user_id, limit, offset),
        ).fetchall()
        return [_notification(row) for row in rows]

    def applied_offset(self, source: str) -> int:
        row = self._db.execute(
            "SELECT offset FROM source_offsets WHERE source = ?", (source,)
        ).fetchone()
        return 0 if row is None else int(row["offset"])

    def apply(
        self, source: str, offset: int, event_id: str, notification: Notification | None
    ) -> bool:
        with transaction(self._db):
            new = self._db.execute(
                "INSERT INTO applied_events (event_id, source, offset, applied_time)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (event_id, source, offset, time.time()),
            ).rowcount
            if new and notification is not None:
                self._insert(notification)
            self._advance(source, offset)
        return bool(new)

    def set_aside(
        self, source: str, offset: int, event_id: str, subject: str, payload: bytes, reason: str
    ) -> None:
        with transaction(self._db):
            self._db.execute(
                "INSERT INTO dead_letters (source, offset, event_id, subject, payload, reason)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, offset) DO NOTHING",
                (source, offset, event_id, subject, payload, reason),
            )
            self._advance(source, offset)

    def _advance(self, source: str, offset: int) -> None:
        self._db.execute(
            "INSERT INTO source_offsets (source, offset) VALUES (?, ?)"
            " ON CONFLICT (source) DO UPDATE SET offset = max(offset, excluded.offset)",
            (source, offset),
        )

    def close(self) -> None:
        self._db.close()
