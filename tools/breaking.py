"""Breaking-change gate: `buf breaking` (FILE rules) plus the REST surface that buf does not check.

Every `google.api.http` binding the baseline serves must still be served unchanged; new RPCs and
new bindings are fine. Each break is reported as `file:line subject: what changed`.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from contracts.descriptors import http_rules, verb_and_path
from tools.protos import PROTO_ROOT, ROOT, build_descriptor_set, contract_files, tool

MODULE = "proto"  # the module directory inside a workspace, as in buf.yaml
BUF_BREAKING_FOUND = 100  # buf's exit code when it found breaking changes

# source_code_info paths: FileDescriptorProto.service = 6, ServiceDescriptorProto.method = 2,
# MethodDescriptorProto.options = 4.
_SERVICE, _METHOD, _OPTIONS = 6, 2, 4
_WILDCARD_VARIABLE = re.compile(r"\{([A-Za-z_][\w.]*)=\*\}")


class GateError(Exception):
    """The gate could not run (a build failed, a directory is missing)."""


@dataclass(frozen=True, order=True)
class Break:
    """One breaking change, located in a contract file."""

    file: str
    line: int
    subject: str
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.subject}: {self.what}"


@dataclass(frozen=True)
class Binding:
    """One HTTP binding of an RPC: the parts a REST caller depends on."""

    verb: str
    path: str
    body: str
    response_body: str

    def __str__(self) -> str:
        text = f"{self.verb} {self.path}"
        if self.body:
            text += f' body="{self.body}"'
        if self.response_body:
            text += f' response_body="{self.response_body}"'
        return text

    def differences(self, other: Binding) -> str:
        """What differs from `other`, part by part."""
        parts = ("verb", "path", "body", "response_body")
        return "; ".join(
            f'{part} "{getattr(self, part)}" is now "{getattr(other, part)}"'
            for part in parts
            if getattr(self, part) != getattr(other, part)
        )


@dataclass(frozen=True)
class Rpc:
    """An RPC's REST surface and where it is declared."""

    file: str
    line: int
    bindings: tuple[Binding, ...]


def bindings_of(rules: Iterable[http_pb2.HttpRule]) -> tuple[Binding, ...]:
    """The bindings of a method's HTTP rules (the primary one first)."""
    bindings = []
    for rule in rules:
        pattern = verb_and_path(rule)
        if pattern is not None:
            verb, path = pattern
            # `{name=*}` and `{name}` are the same template.
            template = _WILDCARD_VARIABLE.sub(r"{\1}", path)
            bindings.append(Binding(verb.upper(), template, rule.body, rule.response_body))
    return tuple(bindings)


def rest_surface(image: Path, files: Iterable[str]) -> dict[str, Rpc]:
    """Map each RPC's full name in `files` of a buf image to its HTTP bindings."""
    wanted = set(files)
    file_set = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes())
    surface: dict[str, Rpc] = {}
    for proto in file_set.file:
        if proto.name not in wanted:
            continue
        spans = {tuple(loc.path): loc.span[0] for loc in proto.source_code_info.location}
        for s, service in enumerate(proto.service):
            for m, method in enumerate(service.method):
                where = (_SERVICE, s, _METHOD, m)
                option = (*where, _OPTIONS, annotations_pb2.HTTP_FIELD_NUMBER)
                line = spans.get(option, spans.get(where, 0)) + 1
                name = f"{proto.package}.{service.name}.{method.name}"
                surface[name] = Rpc(f"{MODULE}/{proto.name}", line, bindings_of(http_rules(method)))
    return surface


def rest_breaks(current: Mapping[str, Rpc], baseline: Mapping[str, Rpc]) -> list[Break]:
    """Bindings of `baseline` that `current` no longer serves exactly as before."""
    breaks = []
    for name, old in baseline.items():
        new = current.get(name)
        if new is None:
            breaks += [
                Break(old.file, old.line, name, f"rpc removed, so REST binding {b} is gone")
                for b in old.bindings
            ]
            continue
        added = [b for b in new.bindings if b not in old.bindings]
        for index, binding in enumerate(old.bindings):
            if binding in new.bindings:
                continue
            # A new binding in the same place is taken as this binding, edited.
            if index < len(new.bindings) and new.bindings[index] in added:
                change = binding.differences(new.bindings[index])
                what = f"REST binding {binding} changed: {change}"
            else:
                what = f"REST binding {binding} removed"
            breaks.append(Break(new.file, new.line, name, what))
    return breaks


def buf_breaks(workspace: Path, against: Path) -> list[Break]:
    """Run `buf breaking` (the rules in buf.yaml) on the workspace's module against an image."""
    result = subprocess.run(
        [tool("buf"), "breaking", MODULE, "--against", str(against), "--error-format", "json"],
        cwd=workspace,
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, BUF_BREAKING_FOUND):
        raise GateError(f"buf breaking failed:\n{result.stderr}{result.stdout}")
    breaks = []
    for line in result.stdout.splitlines():
        found = json.loads(line)
        breaks.append(
            Break(found["path"], found.get("start_line", 0), found["type"], found["message"])
        )
    return breaks


def make_workspace(protos: Path, workspace: Path) -> Path:
    """A buf workspace at `workspace` holding a copy of `protos` and the project's buf.yaml."""
    if not protos.is_dir():
        raise GateError(f"proto directory not found: {protos}")
    shutil.copytree(protos, workspace / MODULE)
    shutil.copyfile(ROOT / "buf.yaml", workspace / "buf.yaml")
    return workspace


def export_ref(ref: str, destination: Path, folder: str = MODULE, repo: Path = ROOT) -> str | None:
    """Extract `folder` (the protos) of git `ref` in `repo` into `destination`; a note instead if
    there is none."""

    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True)

    if git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        return f"baseline {ref!r} does not exist (first commit or shallow clone?)"
    if git("cat-file", "-e", f"{ref}:{folder}").returncode != 0:
        return f"baseline {ref!r} has no {folder}/ directory"
    archive = git("archive", "--format=tar", ref, "--", folder)
    if archive.returncode != 0:
        raise GateError(f"git archive {ref} failed: {archive.stderr.decode()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    return None


def check(current: Path, baseline: Path) -> list[Break]:
    """Every breaking change from the protos in `baseline` to the protos in `current`."""
    with tempfile.TemporaryDirectory(prefix="breaking-") as scratch:
        surfaces = {}
        for role, protos in (("current", current), ("baseline", baseline)):
            workspace = make_workspace(protos, Path(scratch) / role)
            image = workspace / f"{role}.binpb"
            try:
                build_descriptor_set(image, workspace, MODULE, error_types=False)
            except subprocess.CalledProcessError as error:
                raise GateError(f"buf build failed for the {role} protos in {protos}") from error
            surfaces[role] = rest_surface(image, contract_files(workspace / MODULE))
        found = buf_breaks(Path(scratch) / "current", Path(scratch) / "baseline" / "baseline.binpb")
    return sorted(found + rest_breaks(surfaces["current"], surfaces["baseline"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    against = parser.add_mutually_exclusive_group(required=True)
    against.add_argument("--against", metavar="REF", help="git ref holding the baseline protos")
    against.add_argument("--against-dir", type=Path, help="directory holding the baseline protos")
    parser.add_argument("--proto", type=Path, default=PROTO_ROOT, help="the current protos")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="baseline-") as exported:
            if args.against is not None:
                note = export_ref(args.against, Path(exported))
                if note is not None:
                    print(f"breaking: {note}; nothing to compare", file=sys.stderr)
                    return 0
                baseline, label = Path(exported) / MODULE, args.against
            else:
                baseline, label = args.against_dir, str(args.against_dir)
            breaks = check(args.proto, baseline)
    except GateError as error:
        print(f"breaking: {error}", file=sys.stderr)
        return 2
    for found in breaks:
        print(found)
    if breaks:
        print(f"breaking: {len(breaks)} breaking change(s) against {label}", file=sys.stderr)
        return 1
    print(f"breaking: no breaking changes against {label}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
