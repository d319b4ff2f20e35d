"""SQLite storage for users; the email column is unique."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from services.runtime.errors import AlreadyExists
from services.runtime.sqlite import connect
from services.users.domain import User

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    create_time TEXT NOT NULL
);
"""


def _user(row: sqlite3.Row) -> User:
    return User(
        row["user_id"],
        row["email"],
        row["display_name"],
        datetime.fromisoformat(row["create_time"]),
    )


class SqliteUserStore:
    def __init__(self, path: str) -> None:
        self._db = connect(path, SCHEMA)

    def add(self, user: User) -> None:
        try:
            self._db.execute(
                "INSERT INTO users (user_id, email, display_name, create_time) VALUES (?, ?, ?, ?)",
                (user.user_id, user.email, user.display_name, user.create_time.isoformat()),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(
                f"a user with email {user.email!r} already exists", reason="EMAIL_TAKEN"
            ) from None

    def get(self, user_id: str) -> User | None:
        row = self._db.execute("SELECT * FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else _user(row)

    def list(self, offset: int, limit: int) -> list[User]:
        rows = self._db.execute(
            "SELECT * FROM users ORDER BY seq LIMIT ? OFFSET ?", (limit, offset)
        ).fetchall()
        return [_user(row) for row in rows]

    def close(self) -> None:
        self._db.close()
