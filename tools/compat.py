"""One compatibility gate for every schema kind, against one git baseline: the Avro subjects
(`contracts.compat`) and the protobuf contracts (`tools.breaking`: buf FILE rules, REST bindings).

Every problem is one line, `file: subject: what broke (mode)`; the exit code is 1 if there is any.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from contracts import compat as avro_compat
from tools import breaking
from tools.protos import ROOT

AVRO = avro_compat.LABEL
PROTO = breaking.MODULE


def proto_line(found: breaking.Break) -> str:
    """A protobuf break in the gate's format; buf names its rule in upper case, the REST check
    names the RPC."""
    mode = "buf FILE" if found.subject.isupper() else "REST binding"
    return f"{found.file}:{found.line}: {found.subject}: {found.what} ({mode})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--against", metavar="REF", default="main", help="git baseline ref")
    parser.add_argument(
        "--repo", type=Path, default=ROOT, help="the git work tree to check (default: this one)"
    )
    args = parser.parse_args(argv)
    repo, ref = args.repo.resolve(), args.against
    lines: dict[str, list[str]] = {"Avro": [], "protobuf": []}
    skipped: list[str] = []
    broken = None
    with tempfile.TemporaryDirectory(prefix="compat-") as scratch:
        baseline = Path(scratch)
        note = breaking.export_ref(ref, baseline, AVRO, repo)
        if note is not None:
            skipped.append(f"{note}: published Avro versions not compared")
        avro_baseline = None if note is not None else baseline / AVRO
        lines["Avro"] = [str(p) for p in avro_compat.check(repo / AVRO, avro_baseline)]
        try:
            note = breaking.export_ref(ref, baseline, PROTO, repo)
            if note is not None:
                skipped.append(f"{note}: protobuf not compared")
            else:
                found = breaking.check(repo / PROTO, baseline / PROTO)
                lines["protobuf"] = [proto_line(b) for b in found]
        except breaking.GateError as error:
            broken = f"protobuf gate could not run: {error}"
    for line in lines["Avro"] + lines["protobuf"]:
        print(line)
    for note in skipped:
        print(f"compat: {note}", file=sys.stderr)
    if broken is not None:
        print(f"compat: {broken}", file=sys.stderr)
        return 2
    total = sum(map(len, lines.values()))
    counts = ", ".join(f"{len(found)} {kind}" for kind, found in lines.items())
    print(f"compat: {total} problem(s) against {ref} ({counts})", file=sys.stderr)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
