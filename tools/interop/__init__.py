"""Build what the interop suite runs besides Python: the Go runner, the Go catalog, the TS runner.

Everything lands in build/ (build/bin, build/clients-ts); the Go code uses gen/go and the
TypeScript code gen/ts from `make proto-polyglot`. A missing toolchain is named and fails.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from tools.polyglot import GEN_GO, GEN_TS, PolyglotError, run
from tools.protos import BUILD, ROOT, tool

BIN = BUILD / "bin"
GO_RUNNER = BIN / "shop-interop-go"
CATALOG_GO = BIN / "catalog-go"
TS_SOURCE = ROOT / "clients" / "ts"
TS_BUILD = BUILD / "clients-ts"
TS_RUNNER = TS_BUILD / "dist" / "src" / "interop.js"
# Messages the TypeScript runner decodes that the contracts do not import, generated beside them.
GOOGLE_RPC = ("status.proto", "error_details.proto")
HEALTH_PROTO = Path("node_modules/grpc-health-check/proto/health/v1/health.proto")


class InteropError(PolyglotError):
    """A build step failed or a toolchain is missing; the message says which."""


def require(*toolchains: str) -> None:
    missing = [name for name in toolchains if shutil.which(name) is None]
    if missing:
        raise InteropError(
            f"missing toolchain(s) on PATH: {', '.join(missing)} (the interop suite needs Go for"
            " the Go runner and catalog-go, Node.js and npm for the TypeScript runner)"
        )
    for generated in (GEN_GO / "go.mod", GEN_TS):
        if not generated.exists():
            raise InteropError(f"{generated.relative_to(ROOT)} is missing: run make proto-polyglot")


def build_go_runner() -> None:
    """Build the Go runner (clients/go) into build/bin."""
    require("go")
    module = ROOT / "clients" / "go"
    run(["go", "vet", "./..."], cwd=module)
    run(["go", "build", "-o", str(GO_RUNNER), "./cmd/shop-interop"], cwd=module)


def build_catalog_go() -> None:
    """Build the Go catalog (services/catalog-go) into build/bin."""
    require("go")
    module = ROOT / "services" / "catalog-go"
    run(["go", "vet", "./..."], cwd=module)
    run(["go", "build", "-o", str(CATALOG_GO), "."], cwd=module)


def build_ts_runner() -> None:
    """Install clients/ts's pinned packages, generate its extra types, type-check and compile."""
    require("node", "npm")
    TS_BUILD.mkdir(parents=True, exist_ok=True)
    lock = TS_BUILD / "package-lock.json"
    if not (
        (TS_BUILD / "node_modules").is_dir()
        and lock.exists()
        and filecmp.cmp(lock, TS_SOURCE / "package-lock.json", shallow=False)
    ):
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(TS_SOURCE / name, TS_BUILD / name)
        run(["npm", "ci", "--no-audit", "--no-fund"], cwd=TS_BUILD)
    for stale in ("src", "gen", "proto", "dist"):
        shutil.rmtree(TS_BUILD / stale, ignore_errors=True)
    shutil.copytree(TS_SOURCE / "src", TS_BUILD / "src")
    shutil.copyfile(TS_SOURCE / "tsconfig.json", TS_BUILD / "tsconfig.json")
    shutil.copytree(GEN_TS, TS_BUILD / "gen")
    _generate_extra_types()
    run([str(TS_BUILD / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json"], cwd=TS_BUILD)


def _generate_extra_types() -> None:
    """google.rpc (from the googleapis wheel) and grpc.health.v1 (from grpc-health-check)."""
    import google.rpc

    protos = TS_BUILD / "proto"
    (protos / "google" / "rpc").mkdir(parents=True)
    (protos / "grpc" / "health" / "v1").mkdir(parents=True)
    source = Path(next(iter(google.rpc.__path__)))
    for name in GOOGLE_RPC:
        shutil.copyfile(source / name, protos / "google" / "rpc" / name)
    shutil.copyfile(TS_BUILD / HEALTH_PROTO, protos / "grpc" / "health" / "v1" / "health.proto")
    template = {
        "version": "v2",
        "plugins": [
            {
                "local": str(TS_BUILD / "node_modules" / ".bin" / "protoc-gen-es"),
                "out": str(TS_BUILD / "gen"),
                "opt": "target=ts",
            }
        ],
    }
    run([tool("buf"), "generate", str(protos), "--template", json.dumps(template)], cwd=TS_BUILD)


STEPS: dict[str, Callable[[], None]] = {
    "go-runner": build_go_runner,
    "catalog-go": build_catalog_go,
    "ts-runner": build_ts_runner,
}


def runner_commands() -> dict[str, list[str]]:
    """How to start each runner; add `--cases FILE --targets FILE`."""
    return {
        "python": [sys.executable, "-m", "clients.python.interop"],
        "go": [str(GO_RUNNER)],
        "ts": ["node", str(TS_RUNNER)],
    }


def main(argv: list[str]) -> int:
    """`python -m tools.interop build [STEP ...]`: build the named steps, or all of them."""
    names = argv[1:] if argv[:1] == ["build"] else None
    if names is None or any(name not in STEPS for name in names):
        print(f"usage: python -m tools.interop build [{' | '.join(STEPS)} ...]", file=sys.stderr)
        return 2
    try:
        for name in names or STEPS:
            print(f"interop: {(STEPS[name].__doc__ or name).splitlines()[0]}", file=sys.stderr)
            STEPS[name]()
    except PolyglotError as error:
        print(f"interop: {error}", file=sys.stderr)
        return 1
    return 0
