"""`make proto-polyglot` makes Go and TypeScript stubs that compile, or names what is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tools import polyglot
from tools.protos import ROOT, contract_files


def test_missing_toolchains_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    assert polyglot.main() == 1
    assert "missing toolchain(s) on PATH: go, node, npm" in capsys.readouterr().err


@pytest.mark.system
def test_make_proto_polyglot_builds_go_and_typescript() -> None:
    missing = polyglot.missing_toolchains()
    if missing or shutil.which("make") is None:
        pytest.skip(f"needs make, go, node and npm; missing: {', '.join(missing) or 'make'}")

    result = subprocess.run(
        ["make", "--no-print-directory", "proto-polyglot"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert "gen/go builds and vets; gen/ts type-checks" in result.stderr
    for name in contract_files():
        stem = name.removesuffix(".proto")
        assert (polyglot.GEN_GO / f"{stem}.pb.go").is_file()
        assert (polyglot.GEN_TS / f"{stem}_pb.ts").is_file()
        # protoc-gen-go-grpc writes a file only where the proto declares a service.
        has_service = re.search(r"^service ", (ROOT / "proto" / name).read_text(), re.M)
        assert (polyglot.GEN_GO / f"{stem}_grpc.pb.go").is_file() == bool(has_service)
