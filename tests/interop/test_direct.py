"""Every interop case passes in every runner against the Python services, called directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.local.stack import LocalStack
from tests.interop.conftest import CASES, RUNNERS, Run, expected_lines

pytestmark = [pytest.mark.system, pytest.mark.interop]
WORKLOADS = ("users", "catalog", "payments", "orders")


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with LocalStack(tmp_path_factory.mktemp("interop"), services=WORKLOADS) as stack:
        yield {
            "targets": {
                name: {"address": stack.address(name), "probe": stack.address(name)}
                for name in ("users", "catalog", "orders")
            },
            "identities": {"plaintext": {}},
            "identity": "plaintext",
        }


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_case_passes(run_suite: Run, targets: dict[str, Any], runner: str) -> None:
    assert run_suite(runner, CASES, targets) == expected_lines(CASES)


def test_a_failing_case_is_reported(
    run_suite: Run, targets: dict[str, Any], tmp_path: Path
) -> None:
    """The runners do not pass what they cannot check (the suite would prove nothing)."""
    broken = tmp_path / "broken.json"
    broken.write_text(
        '{"cases": [{"id": "wrong", "steps": [{"target": "catalog", "method":'
        ' "shop.catalog.v1.CatalogService/GetProduct", "request": {"productId": "sku-mug"},'
        ' "expect": {"response": {"product": {"priceCents": "1"}}}}]}]}'
    )
    for runner in RUNNERS:
        lines = run_suite(runner, broken, targets)
        assert lines[0].startswith("FAIL wrong: "), (runner, lines)
        assert lines[-1] == "interop: 0/1 cases passed", runner
