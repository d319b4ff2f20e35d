"""Settings and the one function that runs every check on a loaded mesh."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mesh.check.contracts import Contracts, load_contracts
from mesh.check.model import Finding, Mesh, MeshError, load
from mesh.check.schemas import SchemaChecker
from mesh.check.semantic import check_semantics

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    """Where the mesh, the Istio CRDs, the descriptor set and kubectl (for kustomize) are."""

    mesh_dir: Path = ROOT / "mesh"
    crd_dir: Path = ROOT.parent / "shared" / "istio-crds" / "1.30.3"
    descriptor_set: Path = ROOT / "build" / "shop.binpb"
    kubectl: str = "kubectl"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        defaults = cls()
        return cls(
            mesh_dir=Path(environ.get("MESH_DIR", defaults.mesh_dir)),
            crd_dir=Path(environ.get("ISTIO_CRDS", defaults.crd_dir)),
            descriptor_set=Path(environ.get("DESCRIPTOR_SET", defaults.descriptor_set)),
            kubectl=environ.get("KUBECTL", defaults.kubectl),
        )


@dataclass
class Checker:
    """Runs schema and semantic checks; build it once to check many scenarios cheaply."""

    settings: Settings
    contracts: Contracts = field(init=False)
    schemas: SchemaChecker = field(init=False)
    skipped: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.contracts = load_contracts(self.settings.descriptor_set)
        crd_dir: Path | None = self.settings.crd_dir
        if not (self.settings.crd_dir / "crd-all.gen.yaml").is_file():
            self.skipped = (
                f"SKIPPED: Istio CRD schema validation: no Istio CRDs at {self.settings.crd_dir} "
                "(set --crds or ISTIO_CRDS); the other checks still run"
            )
            crd_dir = None
        self.schemas = SchemaChecker(crd_dir)

    def check(self, mesh: Mesh) -> list[Finding]:
        return [*self.schemas.check(mesh), *check_semantics(mesh, self.contracts)]


def check(mesh: Mesh, settings: Settings) -> list[Finding]:
    """Every finding for one mesh (base + istio + at most one scenario)."""
    return Checker(settings).check(mesh)


def load_checked(settings: Settings, scenario: Path | None = None) -> Mesh:
    """The mesh with `scenario` on top, or MeshError listing every finding."""
    mesh = load(settings.mesh_dir, scenario, settings.kubectl)
    findings = check(mesh, settings)
    if findings:
        raise MeshError(findings)
    return mesh
