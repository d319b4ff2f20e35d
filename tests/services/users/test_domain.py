"""Users domain rules, against the real store on each backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from services.runtime.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from services.users.domain import Users
from services.users.store import SqlUserStore
from tests.services.conftest import Opened


@pytest.fixture
def users(database: str, opened: Opened) -> Users:
    return Users(opened(SqlUserStore(database)))


def fields(error: InvalidArgument) -> set[str]:
    return {v.field for v in error.violations}


async def test_create_normalises_and_reads_back(users: Users) -> None:
    created = await users.create("  Ann@Example.COM ", " Ann ")
    assert (created.email, created.display_name) == ("ann@example.com", "Ann")
    assert await users.get(created.user_id) == created


@pytest.mark.parametrize(
    ("email", "name", "bad"),
    [
        ("", "Ann", {"email"}),
        ("not-an-email", "Ann", {"email"}),
        ("ann@example.com", "   ", {"display_name"}),
        ("ann@example.com", "x" * 101, {"display_name"}),
        ("nope", "", {"email", "display_name"}),
    ],
)
async def test_create_names_every_bad_field(
    users: Users, email: str, name: str, bad: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as error:
        await users.create(email, name)
    assert fields(error.value) == bad


async def test_emails_are_unique_ignoring_case(users: Users) -> None:
    await users.create("ann@example.com", "Ann")
    with pytest.raises(AlreadyExists):
        await users.create("ANN@example.com", "Another Ann")


async def test_get_unknown_and_foreign_users(users: Users) -> None:
    ann = await users.create("ann@example.com", "Ann")
    with pytest.raises(NotFound):
        await users.get("usr_missing")
    with pytest.raises(PermissionDenied):
        await users.get(ann.user_id, caller="usr_someone_else")
    assert await users.get(ann.user_id, caller=ann.user_id) == ann


async def test_list_pages_through_everyone_once(users: Users) -> None:
    created = [(await users.create(f"u{i}@example.com", f"U{i}")).user_id for i in range(5)]
    seen, token = [], ""
    while True:
        page = await users.list(2, token)
        seen += [u.user_id for u in page.users]
        token = page.next_page_token
        if not token:
            break
    assert seen == created


@pytest.mark.parametrize(
    ("size", "token", "bad"),
    [(101, "", "page_size"), (-1, "", "page_size"), (10, "garbage!", "page_token")],
)
async def test_list_rejects_bad_paging(users: Users, size: int, token: str, bad: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        await users.list(size, token)
    assert fields(error.value) == {bad}


async def test_data_survives_reopening(database: str, opened: Opened) -> None:
    ann = await Users(opened(SqlUserStore(database))).create("ann@example.com", "Ann")
    assert await Users(opened(SqlUserStore(database))).get(ann.user_id) == ann
