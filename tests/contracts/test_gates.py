"""The Pact gates bite: break a provider in a scratch copy of the project and the verification
of the committed pacts fails, with a report that names what broke (no need to open a pact)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.runtime.topology import ROOT

pytestmark = pytest.mark.system
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


def test_an_event_losing_a_field_the_consumer_reads_fails_the_message_verification(
    tmp_path: Path,
) -> None:
    """orders publishes OrderCancelled v2 without `reason`. Its mode, BACKWARD_TRANSITIVE, lets a
    new version delete a field, so `make compat` passes it; notifications still reads `reason`
    (its reader is v1), and the message pact catches what the compatibility rules allow."""
    copy = scratch_copy(tmp_path)
    versions = copy / "contracts/avro/shop.orders.OrderCancelled"
    schema = json.loads((versions / "v1.avsc").read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "reason"]
    (versions / "v2.avsc").write_text(json.dumps(schema, indent=2) + "\n")
    edit(copy / "contracts/avro/subjects.yaml", "ids: {1: 3}", "ids: {1: 3, 2: 7}")
    compat = run(copy, "-m", "tools.compat", "--against", "HEAD")
    assert compat.returncode == 0, compat.stdout + compat.stderr
    report = verify(copy, "tests/contracts/test_events_providers.py", "-k", "orders")
    assert "orders FAILED verification" in report
    assert "an order is cancelled because its card was declined - an OrderCancelled event" in report
    assert "Actual map is missing the following keys: reason" in report
    assert "shop.orders.OrderCancelled v1 (id 3) cannot read the event" in report
