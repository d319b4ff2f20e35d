"""System-test fixtures: the real service processes, started once per module."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mesh.local.stack import LocalStack
from shop.users.v1 import users_pb2, users_pb2_grpc


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("stack"), env={"LOG_LEVEL": "WARNING"}) as running:
        yield running


def create_user(stack: LocalStack, email: str) -> str:
    with grpc.insecure_channel(stack.address("users")) as channel:
        reply = users_pb2_grpc.UserServiceStub(channel).CreateUser(
            users_pb2.CreateUserRequest(email=email, display_name="Test Customer"), timeout=5
        )
    return str(reply.user.user_id)


def payments_for(stack: LocalStack, key: str) -> list[tuple[str, str]]:
    """(payment id, state) of every payment recorded under an idempotency key, read from the
    payments service's own database: the ground truth of what was charged."""
    path = Path(stack.workloads["payments"].env["DATABASE_PATH"])
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT payment_id, state FROM payments WHERE idempotency_key = ?", (key,)
        ).fetchall()
