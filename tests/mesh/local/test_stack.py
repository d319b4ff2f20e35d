"""Each run of the local stack writes fresh logs; a restart within a run appends."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.local.stack import LocalStack

pytestmark = pytest.mark.system


def serving_lines(stack: LocalStack) -> int:
    text = stack.workloads["users"].log_path.read_text()
    return sum('"serving"' in line or " serving" in line for line in text.splitlines())


def test_each_run_starts_a_fresh_log_and_restarts_append(tmp_path: Path) -> None:
    with LocalStack(tmp_path, services=("users",)) as first:
        assert serving_lines(first) == 1
    with LocalStack(tmp_path, services=("users",)) as second:
        # The first run's "serving" and "stopping" lines are gone.
        assert serving_lines(second) == 1
        assert "stopping" not in second.workloads["users"].log_path.read_text()
        second.stop("users")
        second.start("users")
        assert serving_lines(second) == 2
