"""Notifications: a user's messages, newest first, free of gRPC and generated code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.runtime.errors import Violations
from services.runtime.identity import ensure_owner
from services.runtime.paging import page_request


@dataclass(frozen=True)
class Notification:
    notification_id: str
    user_id: str
    subject: str
    body: str
    create_time: datetime


class NotificationStore(Protocol):
    def add(self, notification: Notification) -> None:
        """Insert `notification`; adding an id that is already stored changes nothing."""

    def list_for_user(self, user_id: str, offset: int, limit: int) -> list[Notification]:
        """The user's notifications, newest first."""


@dataclass(frozen=True)
class NotificationPage:
    notifications: list[Notification]
    next_page_token: str


class Notifications:
    def __init__(self, store: NotificationStore) -> None:
        self._store = store

    def list(
        self, user_id: str, page_size: int, page_token: str, caller: str | None = None
    ) -> NotificationPage:
        violations = Violations()
        violations.check(bool(user_id), "user_id", "must not be empty")
        page = page_request(page_size, page_token, violations)
        violations.raise_if_any()
        ensure_owner(caller, user_id)
        notifications, token = page.fetch(
            lambda offset, limit: self._store.list_for_user(user_id, offset, limit)
        )
        return NotificationPage(notifications, token)
