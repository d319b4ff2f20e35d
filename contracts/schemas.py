"""The Avro schema registry of `contracts/avro/` and the event codec in Confluent's wire format.

A payload is magic byte 0, the writer schema's 4-byte big-endian registry id, then the record in
Avro's binary encoding (fastavro, schemaless), so a Confluent registry could take over the ids.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import yaml

AVRO_ROOT = Path(__file__).resolve().parent / "avro"
SUBJECTS_FILE = "subjects.yaml"
MODES = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)
_HEADER = struct.Struct(">bI")
MAGIC_BYTE = 0


class RegistryError(ValueError):
    """`contracts/avro/` is inconsistent: a missing file, a duplicate id, an unknown mode."""


class DecodeError(ValueError):
    """A payload is not a record this registry can read."""


@dataclass(frozen=True)
class SchemaVersion:
    """One published version of a subject, with its registry id and parsed schema."""

    subject: str
    version: int
    schema_id: int
    path: Path
    definition: Mapping[str, Any]  # the .avsc as JSON
    parsed: Any  # fastavro's parsed schema


@dataclass(frozen=True)
class Subject:
    name: str
    compatibility: str
    versions: tuple[SchemaVersion, ...]  # oldest first

    @property
    def latest(self) -> SchemaVersion:
        return self.versions[-1]


class Registry:
    """Every subject and version under one `contracts/avro/` folder."""

    def __init__(self, subjects: Mapping[str, Subject]) -> None:
        self.subjects = dict(subjects)
        self._by_id = {v.schema_id: v for s in subjects.values() for v in s.versions}

    @classmethod
    def load(cls, root: Path = AVRO_ROOT) -> Registry:
        config = yaml.safe_load((root / SUBJECTS_FILE).read_text()) or {}
        default_mode = config.get("default_compatibility", "BACKWARD_TRANSITIVE")
        subjects: dict[str, Subject] = {}
        seen_ids: dict[int, str] = {}
        for name, entry in (config.get("subjects") or {}).items():
            mode = (entry or {}).get("compatibility", default_mode)
            if mode not in MODES:
                raise RegistryError(f"{SUBJECTS_FILE}: {name}: unknown compatibility mode {mode!r}")
            ids = {int(k): int(v) for k, v in ((entry or {}).get("ids") or {}).items()}
            if sorted(ids) != list(range(1, len(ids) + 1)):
                raise RegistryError(
                    f"{SUBJECTS_FILE}: {name}: versions must be 1..N, got {sorted(ids)}"
                )
            versions = []
            for version, schema_id in sorted(ids.items()):
                if schema_id in seen_ids:
                    raise RegistryError(
                        f"{SUBJECTS_FILE}: {name}: id {schema_id} is also {seen_ids[schema_id]}"
                    )
                seen_ids[schema_id] = f"{name} v{version}"
                path = root / name / f"v{version}.avsc"
                if not path.is_file():
                    raise RegistryError(f"{path}: missing (declared in {SUBJECTS_FILE})")
                definition = json.loads(path.read_text())
                full_name = _full_name(definition)
                if full_name != name:
                    raise RegistryError(f"{path}: {name}: the record is named {full_name!r}")
                parsed = fastavro.parse_schema(definition)
                versions.append(SchemaVersion(name, version, schema_id, path, definition, parsed))
            if not versions:
                raise RegistryError(f"{SUBJECTS_FILE}: {name}: no versions")
            subjects[name] = Subject(name, mode, tuple(versions))
        return cls(subjects)

    def subject(self, name: str) -> Subject:
        try:
            return self.subjects[name]
        except KeyError:
            raise RegistryError(f"unknown subject {name!r}") from None

    def by_id(self, schema_id: int) -> SchemaVersion:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise DecodeError(f"unknown schema id {schema_id}") from None


@cache
def default_registry() -> Registry:
    """The registry of this checkout's `contracts/avro/`, loaded once."""
    return Registry.load()


def _full_name(definition: Mapping[str, Any]) -> str:
    name = str(definition.get("name", ""))
    namespace = definition.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def encode(writer: SchemaVersion, record: Mapping[str, Any]) -> bytes:
    """`record` in Confluent's wire format, written with `writer`."""
    out = io.BytesIO()
    out.write(_HEADER.pack(MAGIC_BYTE, writer.schema_id))
    fastavro.schemaless_writer(out, writer.parsed, dict(record))
    return out.getvalue()


def schema_id(payload: bytes) -> int:
    """The writer schema id in a wire-format payload's header."""
    if len(payload) < _HEADER.size:
        raise DecodeError(f"payload of {len(payload)} bytes has no wire-format header")
    magic, found = _HEADER.unpack_from(payload)
    if magic != MAGIC_BYTE:
        raise DecodeError(f"magic byte is {magic}, not {MAGIC_BYTE}")
    return int(found)


def decode(registry: Registry, payload: bytes, reader: SchemaVersion) -> dict[str, Any]:
    """Read a wire-format payload as `reader`, resolving from the writer schema its id names."""
    writer = registry.by_id(schema_id(payload))
    if writer.subject != reader.subject:
        raise DecodeError(f"payload is {writer.subject}, expected {reader.subject}")
    body = io.BytesIO(payload[_HEADER.size :])
    try:
        record = fastavro.schemaless_reader(body, writer.parsed, reader.parsed)
    except Exception as error:  # fastavro raises many types for truncated or garbled bytes
        raise DecodeError(f"{writer.subject} v{writer.version}: {error}") from error
    if body.tell() != len(payload) - _HEADER.size:
        raise DecodeError(f"{writer.subject} v{writer.version}: trailing bytes after the record")
    if not isinstance(record, dict):
        raise DecodeError(f"{writer.subject}: not a record")
    return record
