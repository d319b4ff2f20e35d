"""Test-wide settings: no Pact telemetry, and helpers shared by the suites."""

from __future__ import annotations

import os

os.environ.setdefault("PACT_DO_NOT_TRACK", "true")
