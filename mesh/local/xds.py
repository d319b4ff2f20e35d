"""Envoy v3 JSON building blocks shared by the sidecar renderers: typed configs, addresses,
file-based config sources and discovery responses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mesh.local.stack import HOST

JSON = dict[str, Any]


def typed(kind: str, **fields: Any) -> JSON:
    return {"@type": f"type.googleapis.com/envoy.{kind}", **fields}


def socket_address(port: int) -> JSON:
    return {"socket_address": {"address": HOST, "port_value": port}}


def file_source(path: Path, watched: Path) -> JSON:
    """A config source read from `path`, reloaded when a file is moved into `watched`."""
    return {
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(watched)}},
        "resource_api_version": "V3",
    }


def discovery_response(version: str, kind: str, resources: list[JSON]) -> JSON:
    url = f"type.googleapis.com/envoy.config.{kind}"
    return {"version_info": version, "resources": [{"@type": url, **r} for r in resources]}
