"""Page size and page token handling shared by every List RPC (grpc-free)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from services.runtime.errors import Violations

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class PageRequest:
    """A validated page request: how many items, and the offset to start from."""

    size: int
    offset: int

    async def fetch(self, rows: Callable[[int, int], Awaitable[list[T]]]) -> tuple[list[T], str]:
        """This page's items from `rows(offset, limit)`, and the next page's token ("" if none).

        One extra row is asked for, to tell whether another page follows.
        """
        found = await rows(self.offset, self.size + 1)
        items = found[: self.size]
        more = len(found) > self.size
        return items, encode_token(self.offset + len(items)) if more else ""


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _decode_token(token: str) -> int | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    offset = value.get("o") if isinstance(value, dict) else None
    return offset if isinstance(offset, int) and offset >= 0 else None


def page_request(page_size: int, page_token: str, violations: Violations) -> PageRequest:
    """Validate `page_size` and `page_token`, recording violations instead of raising."""
    violations.check(page_size >= 0, "page_size", "must not be negative")
    violations.check(page_size <= MAX_PAGE_SIZE, "page_size", f"must be at most {MAX_PAGE_SIZE}")
    offset = 0
    if page_token:
        decoded = _decode_token(page_token)
        violations.check(decoded is not None, "page_token", "is malformed; pass next_page_token")
        offset = decoded or 0
    size = page_size or DEFAULT_PAGE_SIZE
    return PageRequest(size=max(1, min(size, MAX_PAGE_SIZE)), offset=offset)
