"""Pact matchers for proto3 JSON, the encoding of the gateway and of the gRPC pacts' contents.

proto3 JSON writes int64 as decimal strings, enums by name and Timestamps in RFC 3339 with a
`Z`; matching by type alone would let a number slip through where a string is promised.
"""

from __future__ import annotations

from collections.abc import Sequence

from pact import match
from pact.match.matcher import AbstractMatcher

INT64 = r"^-?[0-9]+$"
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$"


def int64(example: int) -> AbstractMatcher[str]:
    """An int64/uint64 field: a string of digits, like `example`."""
    return match.regex(str(example), regex=INT64)


def timestamp(example: str = "2026-01-02T03:04:05.678Z") -> AbstractMatcher[str]:
    """A google.protobuf.Timestamp field."""
    return match.regex(example, regex=RFC3339)


def enum(example: str, allowed: Sequence[str]) -> AbstractMatcher[str]:
    """An enum field: one of the `allowed` names (the consumer's view of the enum)."""
    return match.regex(example, regex="^(" + "|".join(sorted(allowed)) + ")$")


def text(example: str) -> AbstractMatcher[str]:
    """Any string, like `example` (ids and messages the provider chooses)."""
    return match.str(example)
