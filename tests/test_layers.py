"""Dependencies point down (checked by parsing imports): each top-level package imports only
the packages below it, so gateway/ and mesh/ never import each other and the shared pieces
(the Envoy runner, the contract readers, the services' runtime) import neither of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each folder may import besides itself and generated code (`shop`); a subfolder listed
# here is checked on its own, not as part of its parent.
ALLOWED: dict[str, set[str]] = {
    "runner": set(),
    "contracts": set(),  # the contract readers: descriptors, Avro schemas, compat rules
    "contracts/pact": {"contracts", "services", "clients"},  # drives the real providers
    "services": {"contracts"},  # services/runtime is the kit every service shares
    "clients": set(),
    "gateway": {"runner", "contracts", "services"},
    "mesh": {"runner", "contracts", "services"},
}
FIRST_PARTY = {"runner", "contracts", "services", "clients", "gateway", "mesh", "tools", "bench"}


def first_party_imports(path: Path) -> set[str]:
    tops: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            tops.add(node.module.partition(".")[0])
    return tops & FIRST_PARTY


def modules(folder: str) -> list[Path]:
    nested = [ROOT / other for other in ALLOWED if other.startswith(f"{folder}/")]
    return [
        path
        for path in sorted((ROOT / folder).rglob("*.py"))
        if not any(path.is_relative_to(n) for n in nested)
    ]


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_folder_imports_only_the_layers_below_it(folder: str) -> None:
    own = folder.partition("/")[0]
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(folder)
        for name in first_party_imports(path) - {own} - ALLOWED[folder]
    }
    assert not offending, sorted(offending)
