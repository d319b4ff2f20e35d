"""Per-request values carried across awaits: request id, caller, and the incoming deadline.

The server interceptor sets them; client channels read them to propagate the deadline and ids.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
# Set by the gateway from a verified token's subject; absent for trusted in-mesh callers.
CALLER_HEADER = "x-user-id"

request_id: ContextVar[str] = ContextVar("request_id", default="")
caller: ContextVar[str | None] = ContextVar("caller", default=None)
deadline: ContextVar[float | None] = ContextVar("deadline", default=None)

# Headers passed on from an incoming call to the calls it makes: the one list.
PROPAGATED: dict[str, ContextVar[str] | ContextVar[str | None]] = {
    REQUEST_ID_HEADER: request_id,
    CALLER_HEADER: caller,
}


def remaining_seconds() -> float | None:
    """Seconds left before the incoming call's deadline, or None when it has none."""
    expiry = deadline.get()
    return None if expiry is None else expiry - time.monotonic()


def propagated_metadata() -> tuple[tuple[str, str], ...]:
    values = ((header, var.get()) for header, var in PROPAGATED.items())
    return tuple((header, value) for header, value in values if value)
