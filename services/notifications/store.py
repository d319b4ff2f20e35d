"""SQLite storage for notifications, keyed by notification id so redelivered events add nothing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from services.notifications.domain import Notification
from services.runtime.sqlite import connect

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

    def close(self) -> None:
        self._db.close()
