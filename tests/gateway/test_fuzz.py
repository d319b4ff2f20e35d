"""schemathesis against /openapi.json through the gateway to the real services (bounded, seeded)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gateway import auth
from gateway.settings import ROOT
from mesh.local.stack import LocalStack
from tests.gateway.conftest import running_gateway

pytestmark = pytest.mark.system
SEED = 20261124
MAX_EXAMPLES = 40
MIN_REQUESTS = 500
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def test_every_response_conforms_to_the_document(tmp_path: Path) -> None:
    limits = {f"RATE_LIMIT_{g}": "100000" for g in ("PUBLIC", "READ", "WRITE")}
    with LocalStack(tmp_path / "stack") as stack:
        upstreams = {f"{name.upper()}_ADDR": stack.address(name) for name in stack.workloads}
        with running_gateway(tmp_path / "gateway", {**upstreams, **limits}) as (envoy, settings):
            # A real user's token, so protected routes reach the services' own checks.
            token = auth.mint_token(settings, "usr_fuzzer")
            har = tmp_path / "run.har"
            result = subprocess.run(
                [
                    str(ROOT / ".venv" / "bin" / "schemathesis"),
                    "run",
                    f"http://{envoy.address}/openapi.json",
                    "--url",
                    f"http://{envoy.address}",
                    "--seed",
                    str(SEED),
                    "--max-examples",
                    str(MAX_EXAMPLES),
                    "--workers",
                    "1",
                    "--header",
                    f"Authorization: Bearer {token}",
                    "--report",
                    "har",
                    "--report-har-path",
                    str(har),
                    # The acceptance criteria: no unexpected 5xx, and responses as documented.
                    "--checks",
                    ",".join(CHECKS),
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                timeout=900,
                cwd=tmp_path,
            )
    (tmp_path / "output.txt").write_text(result.stdout + result.stderr)
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = [entry["response"]["status"] for entry in entries]
    assert len(statuses) >= MIN_REQUESTS, output
    assert [s for s in statuses if s >= 500 and s != 503] == []
