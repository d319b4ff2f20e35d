"""Settings and the one function that runs every check on a loaded mesh."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mesh.check.contracts import Contracts, load_contracts
from mesh.check.model import Finding, Mesh, MeshError, load
from mesh.check.schemas import ISTIO_CRD_FILE, SchemaChecker
from mesh.check.semantic import check_semantics
from services.runtime.topology import ROOT

# The setting that names the folder with Istio's CRD schemas (its `crd-all.gen.yaml`), and its
# default: Istio 1.30.3's, in the shared folder beside the checkout. Where the file is missing,
# only the Istio schema check is skipped, with a message.
CRDS_VARIABLE = "ISTIO_CRDS"
DEFAULT_CRD_DIR = ROOT.parent / "shared" / "istio-crds" / "1.30.3"


@dataclass(frozen=True)
class Settings:
    """Where the mesh, the Istio CRDs, the descriptor set and kubectl (for kustomize) are."""

    mesh_dir: Path = ROOT / "mesh"
    crd_dir: Path = DEFAULT_CRD_DIR
    descriptor_set: Path = ROOT / "build" / "shop.binpb"
    kubectl: str = "kubectl"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        defaults = cls()
        return cls(
            mesh_dir=Path(environ.get("MESH_DIR", defaults.mesh_dir)),
            crd_dir=Path(environ.get(CRDS_VARIABLE, defaults.crd_dir)),
            descriptor_set=Path(environ.get("DESCRIPTOR_SET", defaults.descriptor_set)),
            kubectl=environ.get("KUBECTL", defaults.kubectl),
        )

    @property
    def crd_file(self) -> Path:
        """Istio's generated CRD file, which may be absent."""
        return self.crd_dir / ISTIO_CRD_FILE


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
        if not self.settings.crd_file.is_file():
            self.skipped = (
                f"SKIPPED: Istio CRD schema validation: no Istio CRDs at {self.settings.crd_dir} "
                f"(set --crds or {CRDS_VARIABLE} to a folder with {ISTIO_CRD_FILE});"
                " the other checks still run"
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
