"""The mesh as data: resources rendered by kustomize, a scenario laid on top, and findings."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services.runtime.topology import ROOT

DEFAULT_NAMESPACE = "default"
ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
DELETE_MARKER = "$patch"  # kustomize's strategic-merge notation: `$patch: delete`

Doc = dict[str, Any]


@dataclass(frozen=True)
class Finding:
    """One problem, named by file, resource and field, so that it can be fixed without a search."""

    source: str
    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.kind}/{self.name}: {self.field}: {self.message}"


class MeshError(Exception):
    """The mesh cannot be loaded, or it failed its checks."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(findings)
        super().__init__("\n".join(str(f) for f in self.findings))


@dataclass(frozen=True)
class Resource:
    """One Kubernetes object as parsed from YAML, with the file it came from."""

    source: str
    doc: Doc = field(compare=False)

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.doc.get("apiVersion", ""))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def metadata(self) -> Doc:
        meta = self.doc.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", DEFAULT_NAMESPACE))

    @property
    def spec(self) -> Doc:
        spec = self.doc.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity as `kubectl apply` sees it: a later object with the same key replaces it."""
        return (self.group, self.kind, self.namespace, self.name)

    def finding(self, path: str, message: str) -> Finding:
        return Finding(self.source, self.kind, self.name, path, message)


@dataclass(frozen=True)
class Mesh:
    """Every resource of one configuration (base + istio, and at most one scenario)."""

    resources: tuple[Resource, ...]
    root: str = "mesh"
    scenario: str | None = None

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources)

    def of_kind(self, kind: str, group: str | None = None) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind and (group is None or r.group == group)]

    def get(self, kind: str, name: str, namespace: str = DEFAULT_NAMESPACE) -> Resource | None:
        for r in self.resources:
            if r.kind == kind and r.name == name and r.namespace == namespace:
                return r
        return None


def as_dict(value: Any) -> Doc:
    """`value` if it is a mapping, else empty: YAML under check may have any shape."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def service_for_host(mesh: Mesh, host: str, namespace: str = DEFAULT_NAMESPACE) -> Resource | None:
    """The Service a host names: `orders`, `orders.default`, `orders.default.svc.cluster.local`."""
    parts = host.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1]) or host.endswith(".svc.cluster.local"):
        name, ns = parts[0], parts[1] if len(parts) > 1 else namespace
        return mesh.get("Service", name, ns)
    return None


def kustomize_command(mesh_dir: Path, kubectl: str = "kubectl") -> list[str]:
    """kustomize as built into kubectl, else the standalone binary (`make kustomize`)."""
    if binary := shutil.which(kubectl):
        return [binary, "kustomize", str(mesh_dir)]
    search = os.pathsep.join([str(ROOT / "build" / "bin"), os.environ.get("PATH", "")])
    if standalone := shutil.which("kustomize", path=search):
        return [standalone, "build", str(mesh_dir)]
    raise MeshError(
        [
            Finding(
                str(mesh_dir),
                "Kustomization",
                "mesh",
                "kubectl",
                f"neither {kubectl!r} nor kustomize found; `make kustomize` installs kustomize",
            )
        ]
    )


def render(mesh_dir: Path, kubectl: str = "kubectl") -> list[Resource]:
    """Render `mesh_dir`'s kustomization with kustomize."""
    result = subprocess.run(
        kustomize_command(mesh_dir, kubectl), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise MeshError(
            [
                Finding(
                    str(mesh_dir / "kustomization.yaml"),
                    "Kustomization",
                    "mesh",
                    "resources",
                    result.stderr.strip(),
                )
            ]
        )
    resources = []
    for doc in _documents(result.stdout, str(mesh_dir)):
        annotations = doc.get("metadata", {}).get("annotations", {})
        origin = yaml.safe_load(annotations.pop(ORIGIN_ANNOTATION, "") or "{}")
        if not annotations:
            doc["metadata"].pop("annotations", None)
        resources.append(Resource(display(mesh_dir / origin.get("path", "")), doc))
    return resources


def read_overlay(path: Path) -> list[Resource]:
    """Resources of a scenario (or fixture) file; namespaced objects default to `default`."""
    resources = []
    for doc in _documents(path.read_text(), str(path)):
        doc.setdefault("metadata", {}).setdefault("namespace", DEFAULT_NAMESPACE)
        resources.append(Resource(display(path), doc))
    return resources


def overlay(base: Sequence[Resource], extra: Sequence[Resource]) -> list[Resource]:
    """Lay `extra` over `base` as `kubectl apply` would; `$patch: delete` removes an object."""
    merged = {r.key: r for r in base}
    for r in extra:
        if r.doc.get(DELETE_MARKER) == "delete":
            if merged.pop(r.key, None) is None:
                raise MeshError([r.finding(DELETE_MARKER, "deletes an object the mesh lacks")])
        else:
            merged[r.key] = r
    return list(merged.values())


def load(mesh_dir: Path, scenario: Path | None = None, kubectl: str = "kubectl") -> Mesh:
    """Parse the mesh (base + istio) and optionally one scenario on top; no validation."""
    return compose(render(mesh_dir, kubectl), mesh_dir, scenario)


def compose(base: Sequence[Resource], mesh_dir: Path, scenario: Path | None) -> Mesh:
    """The rendered mesh with one scenario (or none) laid on top."""
    if scenario is None:
        return Mesh(tuple(base), display(mesh_dir))
    merged = overlay(base, read_overlay(scenario))
    return Mesh(tuple(merged), display(mesh_dir), display(scenario))


def display(path: Path) -> str:
    """A path as a person would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _documents(text: str, source: str) -> Iterator[Doc]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise MeshError([Finding(source, "YAML", "-", "-", str(error))]) from error
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata", {}), dict):
            raise MeshError([Finding(source, "YAML", f"document {index}", "-", "not an object")])
        yield doc
