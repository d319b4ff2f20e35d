"""Generate Go and TypeScript stubs from the contracts (buf.gen.yaml) and prove they compile.

Plugins are pinned here and in package.json and installed into build/; the output (gen/go,
gen/ts) is ignored. A missing toolchain (go, node, npm) is named and fails the run.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tools.protos import BUILD, ROOT, stage_third_party, tool

HERE = Path(__file__).resolve().parent
BIN = BUILD / "bin"
NODE = BUILD / "polyglot"
GEN_GO = ROOT / "gen" / "go"
GEN_TS = ROOT / "gen" / "ts"

GO_PLUGINS = (
    "google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12",
    "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2",
)
# The module the generated Go code lives in (the go_package_prefix in buf.gen.yaml) and what
# it needs; the googleapis annotations are Go code from genproto, not generated here.
GO_MODULE = "example.com/shopmesh/gen/go"
GO_REQUIRES = (
    "google.golang.org/protobuf v1.36.12",
    "google.golang.org/grpc v1.85.0",
    "google.golang.org/genproto/googleapis/api v0.0.0-20261110000943-09e21b237f2c",
)
TOOLCHAINS = ("go", "node", "npm")


class PolyglotError(Exception):
    """A step failed; the message says which and why."""


def run(command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
    """Run a step, failing with its output."""
    result = subprocess.run(
        command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise PolyglotError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def missing_toolchains() -> list[str]:
    return [name for name in TOOLCHAINS if shutil.which(name) is None]


def install_plugins() -> None:
    """Go plugins into build/bin (GOBIN), the TypeScript plugin and tsc into build/polyglot."""
    for package in GO_PLUGINS:
        run(["go", "install", package], env={"GOBIN": str(BIN)})
    NODE.mkdir(parents=True, exist_ok=True)
    lock = NODE / "package-lock.json"
    if (
        (NODE / "node_modules").is_dir()
        and lock.exists()
        and filecmp.cmp(lock, HERE / "package-lock.json", shallow=False)
    ):
        return
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(HERE / name, NODE / name)
    run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE)


def generate() -> None:
    """Run buf generate with buf.gen.yaml (local plugins, managed mode)."""
    stage_third_party()
    run([tool("buf"), "generate", "--template", "buf.gen.yaml"])
    for output in (GEN_GO, GEN_TS):
        if not any(output.rglob("*.*")):
            raise PolyglotError(f"buf generate wrote nothing to {output.relative_to(ROOT)}")


def check_go() -> None:
    """Make gen/go a module that requires the pinned runtime libraries; build and vet it.

    Go code in the repository (clients/go, services/catalog-go) uses it through a `replace`.
    """
    requires = "".join(f"\t{line}\n" for line in GO_REQUIRES)
    (GEN_GO / "go.mod").write_text(f"module {GO_MODULE}\n\ngo 1.24\n\nrequire (\n{requires})\n")
    run(["go", "mod", "tidy"], cwd=GEN_GO)
    run(["go", "build", "./..."], cwd=GEN_GO)
    run(["go", "vet", "./..."], cwd=GEN_GO)


def check_ts() -> None:
    """Type-check gen/ts against the pinned @bufbuild/protobuf runtime."""
    sources = NODE / "ts"
    shutil.rmtree(sources, ignore_errors=True)
    shutil.copytree(GEN_TS, sources)
    shutil.copyfile(HERE / "tsconfig.json", NODE / "tsconfig.json")
    run([str(NODE / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json"], cwd=NODE)


def main() -> int:
    missing = missing_toolchains()
    if missing:
        print(
            f"proto-polyglot: missing toolchain(s) on PATH: {', '.join(missing)}"
            " (Go for the Go stubs, Node.js and npm for the TypeScript stubs)",
            file=sys.stderr,
        )
        return 1
    try:
        for step in (install_plugins, generate, check_go, check_ts):
            print(
                f"proto-polyglot: {(step.__doc__ or step.__name__).splitlines()[0]}",
                file=sys.stderr,
            )
            step()
    except PolyglotError as error:
        print(f"proto-polyglot: {error}", file=sys.stderr)
        return 1
    print("proto-polyglot: gen/go builds and vets; gen/ts type-checks", file=sys.stderr)
    return 0
