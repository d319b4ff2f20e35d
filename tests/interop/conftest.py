"""The interop runners (built once per session) and a way to run one over a case file."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tools import interop
from tools.polyglot import PolyglotError

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases.json"
RUNNERS = ("python", "go", "ts")

Run = Callable[[str, Path, Mapping[str, Any]], list[str]]


def expected_lines(cases: Path) -> list[str]:
    """What every runner prints when every case passes: a runner that skips one differs."""
    ids = [case["id"] for case in json.loads(cases.read_text())["cases"]]
    return [*(f"ok {case_id}" for case_id in ids), f"interop: {len(ids)}/{len(ids)} cases passed"]


@pytest.fixture(scope="session")
def runners() -> dict[str, list[str]]:
    try:
        for step in (interop.build_go_runner, interop.build_ts_runner):
            step()
    except PolyglotError as error:
        pytest.fail(f"cannot build the interop runners: {error}")
    return interop.runner_commands()


@pytest.fixture
def run_suite(runners: dict[str, list[str]], tmp_path: Path) -> Run:
    def run(runner: str, cases: Path, targets: Mapping[str, Any]) -> list[str]:
        path = tmp_path / f"targets-{runner}.json"
        path.write_text(json.dumps(targets, indent=2))
        result = subprocess.run(
            [*runners[runner], "--cases", str(cases), "--targets", str(path)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode in (0, 1), result.stderr  # 1: some case failed
        return result.stdout.splitlines()

    return run
