"""Schema checks: Kubernetes kinds with kubernetes-validate (strict), Istio kinds with Istio's own
CRD schemas made strict about unknown fields, and GRPCRoute with a structural schema of our own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from mesh.check.model import Doc, Finding, Resource

KUBERNETES_VERSION = "1.37.0"
ISTIO_CRD_FILE = "crd-all.gen.yaml"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
# Metadata is the API server's business; the CRD schemas describe what sits beside it.
OBJECT_ENVELOPE = ("apiVersion", "kind", "metadata")

_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_ONES = ("items", "additionalProperties", "not")


def json_path(parts: Iterable[str | int]) -> str:
    """`spec.http[0].route` from ["spec", "http", 0, "route"]."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(root)"


def strict_schema(node: Any) -> Any:
    """A copy of a CRD's OpenAPI schema as JSON Schema that rejects unknown fields.

    The API server prunes unknown fields silently; here they must fail, so every object that
    lists its properties (and does not preserve unknown fields) gets `additionalProperties: false`.
    OpenAPI's `nullable` becomes a type that allows null.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strict_schema(sub) for sub in value]
        elif key in _SCHEMA_ONES and isinstance(value, dict):
            out[key] = strict_schema(value)
        else:
            out[key] = value
    if out.pop("nullable", False):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list):
            out["enum"] = [*out["enum"], None]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_istio_validators(crd_dir: Path) -> dict[tuple[str, str, str], jsonschema.Draft7Validator]:
    """One validator per (group, version, kind) served by the CRDs in `crd_dir`."""
    validators = {}
    with (crd_dir / ISTIO_CRD_FILE).open() as stream:
        for crd in yaml.load_all(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = strict_schema(version["schema"]["openAPIV3Schema"])
                validators[(group, version["name"], kind)] = jsonschema.Draft7Validator(schema)
    return validators


def _name_list(*names: str) -> Doc:
    return {"type": "array", "items": {"type": "string", "enum": list(names)}}


_STRING = {"type": "string", "minLength": 1}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}


def _obj(required: list[str] | None = None, **properties: Any) -> Doc:
    schema: Doc = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


_HEADER_MATCH = _obj(
    ["name", "value"],
    type={"enum": ["Exact", "RegularExpression"]},
    name=_STRING,
    value={"type": "string"},
)
_HEADER_MODIFIER = {"type": "object"}  # set/add/remove: passed through, not used by the mesh
_GRPC_FILTER = _obj(
    ["type"],
    type={
        "enum": ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"]
    },
    requestHeaderModifier=_HEADER_MODIFIER,
    responseHeaderModifier=_HEADER_MODIFIER,
    requestMirror={"type": "object"},
    extensionRef={"type": "object"},
)
_BACKEND_REF = _obj(
    ["name"],
    group={"type": "string"},
    kind=_STRING,
    name=_STRING,
    namespace=_STRING,
    port=_PORT,
    weight={"type": "integer", "minimum": 0, "maximum": 1000000},
    filters={"type": "array", "items": _GRPC_FILTER},
)
_PARENT_REF = _obj(
    ["name"],
    group={"type": "string"},
    kind=_STRING,
    namespace=_STRING,
    name=_STRING,
    sectionName=_STRING,
    port=_PORT,
)
# Written from the Gateway API v1 GRPCRoute reference (standard channel): no CRD is at hand
# offline, so this covers the fields the mesh can use and rejects everything else.
GRPC_ROUTE_SCHEMA = _obj(
    ["spec"],
    spec=_obj(
        None,
        parentRefs={"type": "array", "maxItems": 32, "items": _PARENT_REF},
        hostnames={"type": "array", "maxItems": 16, "items": _STRING},
        rules={
            "type": "array",
            "maxItems": 16,
            "items": _obj(
                None,
                name=_STRING,
                matches={
                    "type": "array",
                    "maxItems": 64,
                    "items": _obj(
                        None,
                        method=_obj(
                            None,
                            type={"enum": ["Exact", "RegularExpression"]},
                            service=_STRING,
                            method=_STRING,
                        ),
                        headers={"type": "array", "maxItems": 16, "items": _HEADER_MATCH},
                    ),
                },
                filters={"type": "array", "maxItems": 16, "items": _GRPC_FILTER},
                backendRefs={"type": "array", "maxItems": 16, "items": _BACKEND_REF},
            ),
        },
    ),
    status={"type": "object"},
)
GATEWAY_API_VALIDATORS = {
    (GATEWAY_API_GROUP, "v1", "GRPCRoute"): jsonschema.Draft7Validator(GRPC_ROUTE_SCHEMA)
}


class SchemaChecker:
    """Validates resources by API group; remembers results, since scenarios share the base."""

    def __init__(self, crd_dir: Path | None) -> None:
        self.istio = load_istio_validators(crd_dir) if crd_dir is not None else None
        self._seen: dict[int, tuple[Doc, list[Finding]]] = {}

    def check(self, resources: Iterable[Resource]) -> list[Finding]:
        findings = []
        for resource in resources:
            cached = self._seen.get(id(resource.doc))
            if cached is None:
                cached = (resource.doc, list(self._check_one(resource)))
                self._seen[id(resource.doc)] = cached
            findings.extend(cached[1])
        return findings

    def _check_one(self, resource: Resource) -> Iterable[Finding]:
        body = {k: v for k, v in resource.doc.items() if k not in OBJECT_ENVELOPE}
        version = resource.api_version.rpartition("/")[2]
        key = (resource.group, version, resource.kind)
        if resource.group.endswith(".istio.io"):
            if self.istio is not None:
                yield from _jsonschema_findings(resource, self.istio, key, body)
        elif resource.group == GATEWAY_API_GROUP:
            yield from _jsonschema_findings(resource, GATEWAY_API_VALIDATORS, key, body)
        else:
            yield from _kubernetes_findings(resource)


def _jsonschema_findings(
    resource: Resource,
    validators: Mapping[tuple[str, str, str], jsonschema.Draft7Validator],
    key: tuple[str, str, str],
    body: Doc,
) -> Iterable[Finding]:
    validator = validators.get(key)
    if validator is None:
        yield resource.finding(
            "apiVersion", f"no schema for {resource.kind} in {resource.api_version}"
        )
        return
    for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path))):
        yield resource.finding(_error_field(error), error.message)


def _kubernetes_findings(resource: Resource) -> Iterable[Finding]:
    try:
        kubernetes_validate.validate(resource.doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        yield resource.finding(_error_field(error), error.message)
    except kubernetes_validate.SchemaNotFoundError:
        yield resource.finding(
            "apiVersion",
            f"Kubernetes {KUBERNETES_VERSION} has no {resource.kind} in {resource.api_version}",
        )


def _error_field(error: jsonschema.ValidationError) -> str:
    """The field an error is about; for an unknown field, that field itself, not its parent."""
    parts: list[str | int] = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        unknown = sorted(k for k in error.instance if k not in known)
        if unknown:
            parts.append(unknown[0])
    return json_path(parts)
