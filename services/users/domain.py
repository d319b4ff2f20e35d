"""Users: registration rules and lookups, free of gRPC and generated code."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.runtime.clock import utc_now
from services.runtime.errors import NotFound, Violations
from services.runtime.identity import ensure_in_mesh, ensure_owner
from services.runtime.paging import page_request

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class User:
    user_id: str
    email: str
    display_name: str
    create_time: datetime


class UserStore(Protocol):
    async def add(self, user: User) -> None:
        """Insert `user`; raise AlreadyExists when the email is taken."""

    async def get(self, user_id: str) -> User | None: ...

    async def list(self, offset: int, limit: int) -> list[User]: ...


@dataclass(frozen=True)
class UserPage:
    users: list[User]
    next_page_token: str


class Users:
    def __init__(
        self,
        store: UserStore,
        new_id: Callable[[], str] = lambda: f"usr_{uuid.uuid4().hex[:12]}",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._new_id = new_id
        self._clock = clock

    async def create(self, email: str, display_name: str) -> User:
        email = email.strip().lower()
        display_name = display_name.strip()
        violations = Violations()
        violations.check(bool(email), "email", "must not be empty")
        violations.check(
            not email or bool(EMAIL.match(email)), "email", "must look like name@example.com"
        )
        violations.check(bool(display_name), "display_name", "must not be blank")
        violations.check(
            len(display_name) <= MAX_NAME_LENGTH,
            "display_name",
            f"must be at most {MAX_NAME_LENGTH} characters",
        )
        violations.raise_if_any()
        user = User(self._new_id(), email, display_name, self._clock())
        await self._store.add(user)
        return user

    async def get(self, user_id: str, caller: str | None = None) -> User:
        violations = Violations()
        violations.check(bool(user_id), "user_id", "must not be empty")
        violations.raise_if_any()
        ensure_owner(caller, user_id)
        user = await self._store.get(user_id)
        if user is None:
            raise NotFound("user", user_id)
        return user

    async def list(self, page_size: int, page_token: str, caller: str | None = None) -> UserPage:
        """Every user (emails included): for back-office workloads in the mesh, never for a
        customer, who reads their own record with `get`."""
        ensure_in_mesh(caller, "listing users")
        violations = Violations()
        page = page_request(page_size, page_token, violations)
        violations.raise_if_any()
        return UserPage(*await page.fetch(self._store.list))
