"""Domain modules stay free of gRPC and generated code (checked by parsing their imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
DOMAINS = sorted(SERVICES.glob("*/domain.py"))
FORBIDDEN = ("grpc", "grpc_status", "grpc_health", "grpc_reflection", "shop", "google")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_service_has_a_domain_module() -> None:
    assert {p.parent.name for p in DOMAINS} == {
        "users",
        "catalog",
        "payments",
        "orders",
        "notifications",
    }


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda p: p.parent.name)
def test_domain_imports_neither_grpc_nor_generated_code(domain: Path) -> None:
    offending = {
        name
        for name in imported_modules(domain)
        if any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)
    }
    assert not offending, f"{domain} imports {sorted(offending)}"


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda p: p.parent.name)
def test_domain_runtime_imports_are_grpc_free(domain: Path) -> None:
    """Runtime modules a domain may use must themselves be grpc-free."""
    for name in imported_modules(domain):
        if name.startswith("services.runtime."):
            module = SERVICES.parent / (name.replace(".", "/") + ".py")
            grpc_free = not any(
                n == f or n.startswith(f"{f}.") for n in imported_modules(module) for f in FORBIDDEN
            )
            assert grpc_free, f"{domain} uses {name}, which imports gRPC or generated code"
