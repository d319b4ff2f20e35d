"""The time source domain modules use by default (grpc- and protobuf-free)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
