"""Load the mesh YAML into plain resources and check it offline: schemas, then semantics.

`load_checked(settings, scenario)` is the entry point for code that renders the mesh (e.g.
sidecar configuration); `python -m mesh.check` is the command-line gate.
"""

from mesh.check.model import Finding, Mesh, MeshError, Resource, load, render
from mesh.check.run import Settings, check, load_checked

__all__ = [
    "Finding",
    "Mesh",
    "MeshError",
    "Resource",
    "Settings",
    "check",
    "load",
    "load_checked",
    "render",
]
