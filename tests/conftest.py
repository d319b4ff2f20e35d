"""Test-wide settings: no Pact telemetry, spans recorded so tests can inspect traces, and one
throwaway PostgreSQL server for the tests that ask for it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tools.postgres import BIN_DIR, TempPostgres, available


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PACT_DO_NOT_TRACK", "true")
    # Services default to a worker per core; system tests start many services at once on small
    # shared machines, so they run one process each (tests/services/runtime/test_workers.py
    # covers several).
    os.environ.setdefault("WORKERS", "1")
    # Services record spans only when exporting; in-process tests record them all, so a test can
    # attach an in-memory exporter (configure_tracing keeps a provider that is already set).
    trace.set_tracer_provider(TracerProvider())


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    """A PostgreSQL 15 server for the whole run (a few seconds to start); tests take a fresh
    database each with `create_database()`."""
    if not available():
        pytest.skip(f"no PostgreSQL server binaries in {BIN_DIR} (make postgres installs them)")
    with TempPostgres() as server:
        yield server
