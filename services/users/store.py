"""SQL storage for users, on SQLite or PostgreSQL; the email column is unique."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from services.runtime.database import IntegrityError, Migrations, Row, connect
from services.runtime.errors import AlreadyExists
from services.users.domain import User

MIGRATIONS = Migrations("users", Path(__file__).parent / "migrations")


def _user(row: Row) -> User:
    return User(
        row["user_id"],
        row["email"],
        row["display_name"],
        datetime.fromisoformat(row["create_time"]),
    )


class SqlUserStore:
    def __init__(self, database: str) -> None:
        self._db = connect(database, MIGRATIONS)

    async def add(self, user: User) -> None:
        try:
            await self._db.execute(
                "INSERT INTO users (user_id, email, display_name, create_time) VALUES (?, ?, ?, ?)",
                (user.user_id, user.email, user.display_name, user.create_time.isoformat()),
            )
        except IntegrityError:
            raise AlreadyExists(
                f"a user with email {user.email!r} already exists", reason="EMAIL_TAKEN"
            ) from None

    async def get(self, user_id: str) -> User | None:
        row = (await self._db.execute("SELECT * FROM users WHERE user_id = ?", (user_id,))).one()
        return None if row is None else _user(row)

    async def list(self, offset: int, limit: int) -> list[User]:
        rows = (
            await self._db.execute(
                "SELECT * FROM users ORDER BY seq LIMIT ? OFFSET ?", (limit, offset)
            )
        ).rows
        return [_user(row) for row in rows]

    async def close(self) -> None:
        await self._db.close()
