"""`python -m mesh.check [FILE ...]`: check the mesh alone and with each scenario (or each FILE)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesh.check.model import MeshError, compose, display, render
from mesh.check.run import CRDS_VARIABLE, Checker, Settings


def main(argv: list[str] | None = None) -> int:
    defaults = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m mesh.check", description=__doc__)
    parser.add_argument(
        "files", nargs="*", type=Path, help="overlays to check (default: scenarios)"
    )
    parser.add_argument("--mesh", type=Path, default=defaults.mesh_dir, help="kustomization dir")
    parser.add_argument(
        "--crds",
        type=Path,
        default=defaults.crd_dir,
        help=f"folder with Istio's CRDs ({CRDS_VARIABLE}; default %(default)s)",
    )
    parser.add_argument("--descriptors", type=Path, default=defaults.descriptor_set)
    parser.add_argument("--kubectl", default=defaults.kubectl, help="kubectl (runs kustomize)")
    args = parser.parse_args(argv)
    settings = Settings(args.mesh, args.crds, args.descriptors, args.kubectl)

    try:
        checker = Checker(settings)
        base = render(settings.mesh_dir, settings.kubectl)
    except MeshError as error:
        print(f"FAIL\n{error}", file=sys.stderr)
        return 1
    if checker.skipped:
        print(checker.skipped)
    overlays: list[Path | None] = list(args.files)
    if not args.files:
        overlays = [None, *sorted((settings.mesh_dir / "scenarios").glob("*.yaml"))]
    failed = 0
    for overlay in overlays:
        label = display(settings.mesh_dir) + (f" + {display(overlay)}" if overlay else "")
        try:
            mesh = compose(base, settings.mesh_dir, overlay)
            findings = checker.check(mesh)
        except MeshError as error:
            findings = list(error.findings)
        if findings:
            failed += 1
            print(f"FAIL {label}")
            for finding in findings:
                print(f"  {finding}")
        else:
            print(f"ok   {label} ({len(mesh.resources)} resources)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
