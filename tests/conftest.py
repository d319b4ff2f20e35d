"""Test-wide settings: no Pact telemetry, and spans recorded so tests can inspect traces."""

from __future__ import annotations

import os

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PACT_DO_NOT_TRACK", "true")
    # Services record spans only when exporting; in-process tests record them all, so a test can
    # attach an in-memory exporter (configure_tracing keeps a provider that is already set).
    trace.set_tracer_provider(TracerProvider())
