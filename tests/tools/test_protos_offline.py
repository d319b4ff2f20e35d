"""Stub generation needs no network, and its output is exactly the committed gen/python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.protos import GEN_PYTHON, ROOT


def no_network_prefix() -> list[str]:
    """An `unshare` command line that runs its argument with no network; skip if not permitted."""
    for prefix in (["unshare", "--net"], ["unshare", "--map-root-user", "--net"]):
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True)
        except FileNotFoundError:
            pytest.skip(
                "unshare is not installed, so generation cannot be cut off from the network"
            )
        if probe.returncode == 0:
            return prefix
    pytest.skip(f"unshare may not create a network namespace here: {probe.stderr.decode().strip()}")


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_generation_is_offline_and_matches_the_committed_stubs(tmp_path: Path) -> None:
    prefix = no_network_prefix()
    output = tmp_path / "python"
    command = [
        *prefix,
        sys.executable,
        "-m",
        "tools.protos",
        "generate",
        "--out",
        str(output),
        "--descriptor-out",
        str(tmp_path / "shop.binpb"),
    ]

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    generated, committed = tree(output), tree(GEN_PYTHON)
    assert sorted(generated) == sorted(committed), "gen/python is stale: run `make proto`"
    stale = [name for name in generated if generated[name] != committed[name]]
    assert not stale, f"gen/python is stale: run `make proto` ({', '.join(stale)})"
