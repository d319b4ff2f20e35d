"""Domain errors, free of gRPC. The error interceptor maps each class to a status code.

Raise these from domain code; never build a gRPC status by hand in a service.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ERROR_DOMAIN = "shop.example.com"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field in a request, named by its proto field path (e.g. `items[0].quantity`)."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error a caller can act on. `reason` is a stable UPPER_SNAKE code."""

    reason: str = "DOMAIN_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidArgument(DomainError):
    """The request itself is malformed; `violations` names every bad field."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations = tuple(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(f"invalid request: {fields}")


class NotFound(DomainError):
    """A named resource does not exist."""

    reason = "NOT_FOUND"

    def __init__(self, resource: str, resource_id: str) -> None:
        super().__init__(
            f"{resource} {resource_id!r} not found", reason=f"{resource.upper()}_NOT_FOUND"
        )
        self.resource = resource
        self.resource_id = resource_id


class AlreadyExists(DomainError):
    """Creating the resource would duplicate a unique value."""

    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The request is valid but the system's state does not allow it (e.g. out of stock)."""

    reason = "FAILED_PRECONDITION"


class PermissionDenied(DomainError):
    """The caller is known but may not touch this resource."""

    reason = "PERMISSION_DENIED"


class Unavailable(DomainError):
    """A dependency could not be reached; the caller may retry later."""

    reason = "UNAVAILABLE"


class Violations:
    """Collects field violations so a request reports every bad field at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def check(self, ok: bool, field: str, description: str) -> None:
        if not ok:
            self._items.append(FieldViolation(field, description))

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(self._items)
