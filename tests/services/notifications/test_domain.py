"""Notification reads against the real SQLite store: newest first, paged, owner only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.notifications.domain import Notification, Notifications
from services.notifications.store import SqlNotificationStore
from services.runtime.errors import InvalidArgument, PermissionDenied
from tests.services.conftest import Opened

START = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def note(n: int, user_id: str = "usr_ann", minutes: int | None = None) -> Notification:
    moment = START + timedelta(minutes=n if minutes is None else minutes)
    return Notification(f"ntf_{n}", user_id, f"Subject {n}", f"Body {n}", moment)


@pytest.fixture
def store(database: str, opened: Opened) -> SqlNotificationStore:
    return opened(SqlNotificationStore(database))


def ids(page_notifications: list[Notification]) -> list[str]:
    return [n.notification_id for n in page_notifications]


def fields(error: InvalidArgument) -> set[str]:
    return {v.field for v in error.violations}


async def test_lists_one_users_notifications_newest_first(store: SqlNotificationStore) -> None:
    for n in (2, 0, 3, 1):
        await store.add(note(n))
    await store.add(note(9, user_id="usr_bob"))
    page = await Notifications(store).list("usr_ann", 0, "")
    assert ids(page.notifications) == ["ntf_3", "ntf_2", "ntf_1", "ntf_0"]
    assert page.notifications[0] == note(3)
    assert page.next_page_token == ""


async def test_order_is_by_instant_whatever_the_zone(store: SqlNotificationStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    await store.add(
        Notification("ntf_early", "usr_ann", "s", "b", datetime(2025, 1, 1, 13, 0, tzinfo=plus_two))
    )
    await store.add(
        Notification("ntf_late", "usr_ann", "s", "b", datetime(2025, 1, 1, 12, 0, tzinfo=UTC))
    )
    assert ids((await Notifications(store).list("usr_ann", 0, "")).notifications) == [
        "ntf_late",
        "ntf_early",
    ]


async def test_adding_the_same_id_twice_is_a_no_op(store: SqlNotificationStore) -> None:
    await store.add(note(1))
    await store.add(Notification("ntf_1", "usr_ann", "changed", "changed", START))
    assert (await Notifications(store).list("usr_ann", 0, "")).notifications == [note(1)]


async def test_pages_through_everything_once(store: SqlNotificationStore) -> None:
    for n in range(5):
        await store.add(note(n))
    notifications = Notifications(store)
    seen, token = [], ""
    while True:
        page = await notifications.list("usr_ann", 2, token)
        seen += ids(page.notifications)
        token = page.next_page_token
        if not token:
            break
    assert seen == ["ntf_4", "ntf_3", "ntf_2", "ntf_1", "ntf_0"]


async def test_only_the_owner_may_read(store: SqlNotificationStore) -> None:
    await store.add(note(1))
    notifications = Notifications(store)
    with pytest.raises(PermissionDenied):
        await notifications.list("usr_ann", 0, "", caller="usr_bob")
    assert ids((await notifications.list("usr_ann", 0, "", caller="usr_ann")).notifications) == [
        "ntf_1"
    ]


@pytest.mark.parametrize(
    ("user_id", "size", "token", "bad"),
    [
        ("", 10, "", {"user_id"}),
        ("usr_ann", 101, "", {"page_size"}),
        ("usr_ann", -1, "", {"page_size"}),
        ("usr_ann", 10, "garbage!", {"page_token"}),
        ("", 500, "garbage!", {"user_id", "page_size", "page_token"}),
    ],
)
async def test_list_names_every_bad_field(
    store: SqlNotificationStore, user_id: str, size: int, token: str, bad: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as error:
        await Notifications(store).list(user_id, size, token)
    assert fields(error.value) == bad


async def test_data_survives_reopening(database: str, opened: Opened) -> None:
    await opened(SqlNotificationStore(database)).add(note(1))
    reopened = Notifications(opened(SqlNotificationStore(database)))
    assert (await reopened.list("usr_ann", 0, "")).notifications == [note(1)]
