"""Build the contracts: stage third-party imports, build the descriptor set, generate Python stubs.

Everything runs offline with local tools: buf (from `buf-bin`) parses and lints, grpcio-tools and
mypy-protobuf generate the Python code from buf's descriptor set.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import google.api
from google.protobuf import descriptor_pb2

from contracts.descriptors import add_error_types
from services.runtime.topology import ROOT as ROOT  # re-exported: the tools and benches use it

PROTO_ROOT = ROOT / "proto"
BUILD = ROOT / "build"
THIRD_PARTY = BUILD / "third_party"
DESCRIPTOR_SET = BUILD / "shop.binpb"
GEN_PYTHON = ROOT / "gen" / "python"

# The googleapis files the contracts import; they come from the installed
# googleapis-common-protos wheel so that no third-party .proto is committed.
GOOGLEAPIS_IMPORTS = ("annotations.proto", "http.proto", "field_behavior.proto")


def tool(name: str) -> str:
    """Path of a console script installed next to this interpreter."""
    path = Path(sysconfig.get_path("scripts")) / name
    return str(path) if path.exists() else name


def stage_third_party(third_party: Path = THIRD_PARTY) -> None:
    """Copy the googleapis protos the contracts import into the ignored build folder."""
    source = Path(next(iter(google.api.__path__)))
    target = third_party / "google" / "api"
    target.mkdir(parents=True, exist_ok=True)
    for name in GOOGLEAPIS_IMPORTS:
        data = (source / name).read_bytes()
        # Rewrite only on change: concurrent builds may be reading the staged copy.
        if not (target / name).exists() or (target / name).read_bytes() != data:
            (target / name).write_bytes(data)


def build_descriptor_set(
    output: Path = DESCRIPTOR_SET,
    workspace: Path = ROOT,
    module: str = "proto",
    error_types: bool = True,
) -> Path:
    """Run `buf build` on the contracts module; the image keeps imports and source info.

    With `error_types`, the google/rpc files are appended so that tools given only this file
    (grpcurl -protoset, the transcoder) can decode `google.rpc.Status` details. A baseline image
    for `buf breaking` must not have them: buf would treat them as module files.
    """
    stage_third_party(workspace / "build" / "third_party")
    output.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and renamed into place: other processes may be reading the current file.
    staged = output.with_name(f".{output.name}.{os.getpid()}")
    subprocess.run([tool("buf"), "build", module, "-o", str(staged)], cwd=workspace, check=True)
    if error_types:
        files = descriptor_pb2.FileDescriptorSet.FromString(staged.read_bytes())
        add_error_types(files)
        staged.write_bytes(files.SerializeToString())
    staged.replace(output)
    return output


def contract_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """The contracts' .proto files, relative to the module root, in a stable order."""
    return sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))


def generate_python(descriptor_set: Path = DESCRIPTOR_SET, output: Path = GEN_PYTHON) -> None:
    """Wipe and regenerate messages, gRPC stubs and typed stubs for every contract."""
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--descriptor_set_in={descriptor_set}",
        f"--plugin=protoc-gen-mypy={tool('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={tool('protoc-gen-mypy_grpc')}",
        f"--python_out={output}",
        f"--grpc_python_out={output}",
        f"--mypy_out={output}",
        f"--mypy_grpc_out={output}",
        *contract_files(),
    ]
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["generate", "descriptors"])
    parser.add_argument(
        "--out", type=Path, default=GEN_PYTHON, help="Python output root (wiped first)"
    )
    parser.add_argument(
        "--descriptor-out", type=Path, default=DESCRIPTOR_SET, help="descriptor set path"
    )
    args = parser.parse_args(argv)
    descriptor_set = build_descriptor_set(args.descriptor_out.resolve())
    if args.command == "generate":
        generate_python(descriptor_set, args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
