"""The Pact gates bite: break a provider in a scratch copy of the project and the verification
of the committed pacts fails, with a report that names what broke (no need to open a pact)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "__pycache__", "*_cache", "*.egg-info", "node_modules"
)


def scratch_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "shop"
    shutil.copytree(ROOT, copy, ignore=SKIP)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} no longer contains {old!r}: update this gate test"
    path.write_text(text.replace(old, new))


def run(copy: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run Python in the scratch copy, importing the copy's code rather than the installed tree."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{copy}{os.pathsep}{copy / 'gen' / 'python'}",
        "PACT_DO_NOT_TRACK": "true",
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def verify(copy: Path, test_file: str, *select: str) -> str:
    """Run a provider verification in the copy; it must fail. Returns pytest's report."""
    result = run(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file, *select)
    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    return report


def test_gateway_renaming_a_json_field_fails_the_http_verification(tmp_path: Path) -> None:
    copy = scratch_copy(tmp_path)
    edit(
        copy / "proto/shop/users/v1/users.proto",
        "string display_name = 3;",
        'string display_name = 3 [json_name = "fullName"];',
    )
    assert run(copy, "-m", "tools.protos", "descriptors").returncode == 0
    report = verify(copy, "tests/contracts/test_gateway_provider.py")
    assert "shop-gateway FAILED verification" in report
    assert "a request for the signed-in user" in report
    assert "missing the following keys: displayName" in report


def test_provider_renumbering_a_field_fails_the_grpc_verification(tmp_path: Path) -> None:
    copy = scratch_copy(tmp_path)
    edit(
        copy / "proto/shop/catalog/v1/catalog.proto",
        "int64 unit_price_cents = 3 [(google.api.field_behavior) = OUTPUT_ONLY];",
        "int64 unit_price_cents = 4 [(google.api.field_behavior) = OUTPUT_ONLY];",
    )
    assert run(copy, "-m", "tools.protos", "generate").returncode == 0
    report = verify(copy, "tests/contracts/test_orders_providers.py", "-k", "catalog")
    assert "catalog FAILED verification" in report
    assert "ReserveStock for products in stock" in report
    assert "unitPriceCents" in report


def test_payments_new_decline_reason_fails_naming_the_interaction(tmp_path: Path) -> None:
    copy = scratch_copy(tmp_path)
    edit(
        copy / "services/payments/domain.py",
        'reason="CARD_DECLINED"',
        'reason="CARD_DECLINED_BY_ISSUER"',
    )
    report = verify(copy, "tests/contracts/test_orders_providers.py", "-k", "payments")
    assert "payments FAILED verification" in report
    assert "ChargePayment with a card that is declined" in report
    assert "Expected 'CARD_DECLINED_BY_ISSUER' (String) to be equal to 'CARD_DECLINED'" in report
