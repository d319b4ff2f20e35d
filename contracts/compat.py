"""The Avro compatibility gate: every subject's versions must honour its mode, and a published
version (its file, all but its docs, and its registry id) must not change against a baseline copy.

The rules are Apache avro's `avro.compatibility`, the ones Confluent's schema registry applies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from typing import Any, cast

import avro.errors
import avro.schema
import yaml
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
    check_schema_names,
    lookup_writer_field,
)
from fastavro.schema import SchemaParseException

from contracts.schemas import AVRO_ROOT, SUBJECTS_FILE, Registry, RegistryError, SchemaVersion

LABEL = "contracts/avro"  # how files are named in the report, wherever the folder lives
IMMUTABLE = "immutable"
_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.avsc")
_TYPE_MISMATCH = re.compile(r"reader type: (\S+) not compatible with writer type: (\S+)")
Incompatible = SchemaIncompatibilityType


@dataclass(frozen=True, order=True)
class Problem:
    """One failed rule, as `file: subject: what broke (mode)`."""

    file: str
    subject: str
    what: str
    mode: str

    def __str__(self) -> str:
        text = ": ".join(part for part in (self.file, self.subject, self.what) if part)
        return f"{text} ({self.mode})" if self.mode else text


@dataclass(frozen=True)
class Incompatibility:
    """Why a reader schema cannot read a writer's data, located in the reader schema."""

    kind: SchemaIncompatibilityType
    message: str  # avro's own message
    location: tuple[str, ...]  # a JSON-pointer path into the reader schema, as avro gives it


def check(
    root: Path = AVRO_ROOT, baseline: Path | None = None, label: str = LABEL
) -> list[Problem]:
    """Every problem in the `contracts/avro/` folder `root`; with a baseline copy of that folder,
    also every published version or id that changed or disappeared since."""
    problems: list[Problem] = []
    try:
        registry = Registry.load(root)
    except (RegistryError, OSError, ValueError, yaml.YAMLError, SchemaParseException) as e:
        problems.append(Problem(label, "", str(e).replace(str(root), label), ""))
    else:
        problems += undeclared(root, registry, label)
        for subject in registry.subjects.values():
            problems += subject_problems(subject.versions, subject.compatibility, label)
    if baseline is not None:
        problems += published_changes(root, baseline, label)
    return sorted(problems)


def pairs(
    versions: tuple[SchemaVersion, ...], mode: str
) -> Iterator[tuple[SchemaVersion, SchemaVersion, SchemaVersion]]:
    """(reader, writer, version to blame) for each check `mode` asks of the versions: each version
    against the one before it, or against every earlier one in the transitive modes."""
    for index, newer in enumerate(versions[1:], start=1):
        earlier = versions[:index] if mode.endswith("_TRANSITIVE") else versions[index - 1 : index]
        for older in earlier:
            if mode.startswith(("BACKWARD", "FULL")):
                yield newer, older, newer
            if mode.startswith(("FORWARD", "FULL")):
                yield older, newer, newer


def subject_problems(
    versions: tuple[SchemaVersion, ...], mode: str, label: str = LABEL
) -> list[Problem]:
    """The incompatibilities between a subject's versions that its mode forbids."""
    if mode == "NONE":
        return []
    problems = []
    try:
        parsed = {v.version: avro.schema.parse(json.dumps(v.definition)) for v in versions}
    except avro.errors.AvroException as error:
        return [Problem(label, versions[0].subject, f"does not parse: {error}", mode)]
    for reader, writer, blamed in pairs(versions, mode):
        file = f"{label}/{blamed.subject}/v{blamed.version}.avsc"
        cannot = f"v{reader.version} cannot read v{writer.version}"
        reader_schema = parsed[reader.version]
        for found in incompatibilities(reader_schema, parsed[writer.version]):
            what = describe(found, reader_schema, reader.version, writer.version)
            problems.append(Problem(file, blamed.subject, f"{cannot}: {what}", mode))
    return problems


def incompatibilities(
    reader: avro.schema.Schema, writer: avro.schema.Schema
) -> list[Incompatibility]:
    """Why `reader` cannot read data written with `writer` (empty if it can), one entry per cause.

    avro's verdict decides. Its result keeps causes and locations in separate sets, and resets the
    location inside unions, so records, arrays and maps are checked part by part down to the
    pair that breaks, which places each cause.
    """
    return _causes(reader, writer, (), set())


def _causes(
    reader: avro.schema.Schema,
    writer: avro.schema.Schema,
    prefix: tuple[str, ...],
    seen: set[tuple[int, int]],
) -> list[Incompatibility]:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    split: list[Incompatibility] = []
    if (id(reader), id(writer)) not in seen:
        seen.add((id(reader), id(writer)))
        split = _split(reader, writer, prefix, seen)
    if split:
        return split
    # A leaf (primitive, enum, fixed, union), where avro's locations are relative to the pair: one
    # cause at its place, or several (a union's branches) as one entry at the place they share.
    locations = [_tokens(loc) for loc in result.locations if loc != "/"] or [()]
    shared = takewhile(lambda t: len(set(t)) == 1, zip(*locations, strict=False))
    common = tuple(t[0] for t in shared)
    message = "; ".join(sorted(result.messages))
    return [Incompatibility(result.incompatibilities[0], message, prefix + common)]


def _split(
    reader: avro.schema.Schema,
    writer: avro.schema.Schema,
    prefix: tuple[str, ...],
    seen: set[tuple[int, int]],
) -> list[Incompatibility]:
    found: list[Incompatibility] = []
    if reader.type != writer.type:
        return found
    if isinstance(reader, avro.schema.RecordSchema):
        record = cast(avro.schema.RecordSchema, writer)
        name = check_schema_names(reader, record, [])
        if name.compatibility is SchemaCompatibilityType.incompatible:
            found.append(
                Incompatibility(Incompatible.name_mismatch, min(name.messages), (*prefix, "name"))
            )
        for index, field in enumerate(reader.fields):
            at = (*prefix, "fields", str(index))
            written = lookup_writer_field(writer_schema=record, reader_field=field)
            if written is not None:
                found += _causes(field.type, written.type, (*at, "type"), seen)
            elif not field.has_default:
                found.append(
                    Incompatibility(Incompatible.reader_field_missing_default_value, field.name, at)
                )
    elif isinstance(reader, avro.schema.ArraySchema):
        items = cast(avro.schema.ArraySchema, writer).items
        found = _causes(reader.items, items, (*prefix, "items"), seen)
    elif isinstance(reader, avro.schema.MapSchema):
        values = cast(avro.schema.MapSchema, writer).values
        found = _causes(reader.values, values, (*prefix, "values"), seen)
    return found


def _tokens(location: str) -> tuple[str, ...]:
    return tuple(token for token in location.split("/") if token)


def describe(found: Incompatibility, reader: avro.schema.Schema, r: int, w: int) -> str:
    """One readable clause for an incompatibility, naming the field it is in."""
    location = found.location
    if location[-1:] in (("name",), ("symbols",), ("size",)):
        location = location[:-1]  # the named type's attribute: describe the type
    node, field = _walk(reader, location)
    where = f"field '{field}'" if field else "the record"
    kind, message = found.kind, found.message
    if kind is Incompatible.reader_field_missing_default_value:
        return f"{where} is missing from v{w} and has no default in v{r}"
    if kind is Incompatible.type_mismatch and (types := _TYPE_MISMATCH.fullmatch(message)):
        return f"{where} is {types[1]} in v{r} but {types[2]} in v{w}"
    if kind is Incompatible.name_mismatch:
        name = getattr(node, "fullname", "?")
        old = message.removeprefix("expected: ")
        return f"{where} is type {name} in v{r} but {old} in v{w}, and v{r} has no alias for it"
    if kind is Incompatible.missing_enum_symbols:
        symbols = message.strip("{}")
        return f"{where}: v{w} writes enum symbols {symbols} that v{r} lacks, with no enum default"
    if kind is Incompatible.fixed_size_mismatch:
        return f"{where}: fixed size differs ({message})"
    return f"{where}: {message}"


def _walk(schema: avro.schema.Schema, location: tuple[str, ...]) -> tuple[Any, str]:
    """The schema or field a location names, as far as it can be followed, and its field path
    (`items[].quantity` for a location inside fields, arrays and maps)."""
    node: Any = schema
    path = ""
    tokens = iter(location)
    for token in tokens:
        if token == "fields" and isinstance(node, avro.schema.RecordSchema):
            index = int(next(tokens, "-1"))
            if not 0 <= index < len(node.fields):
                break
            node = node.fields[index]
            path += f".{node.name}" if path else node.name
        elif token == "type" and isinstance(node, avro.schema.Field):
            node = node.type
        elif token in ("items", "values") and hasattr(node, token):
            node = getattr(node, token)
            path += "[]" if token == "items" else "{}"
        else:
            break
    return node, path


def undeclared(root: Path, registry: Registry, label: str = LABEL) -> list[Problem]:
    """Schema files the registry would silently skip: not named vN.avsc or not in subjects.yaml."""
    problems = []
    for path in sorted(root.glob("*/*")):
        subject, file = path.parent.name, f"{label}/{path.parent.name}/{path.name}"
        match = _VERSION_FILE.fullmatch(path.name)
        if match is None:
            problems.append(Problem(file, subject, "not a version file (vN.avsc)", ""))
        elif subject not in registry.subjects:
            problems.append(Problem(file, subject, f"subject is not in {SUBJECTS_FILE}", ""))
        elif int(match[1]) > len(registry.subjects[subject].versions):
            what = f"v{match[1]} has no id in {SUBJECTS_FILE}, so it is not checked"
            problems.append(Problem(file, subject, what, ""))
    return problems


def published_changes(root: Path, baseline: Path, label: str = LABEL) -> list[Problem]:
    """Versions and ids of the baseline folder that `root` changed or removed."""
    problems = []
    old_ids, new_ids = _declared_ids(baseline), _declared_ids(root)
    config = f"{label}/{SUBJECTS_FILE}"
    for subject, ids in sorted(old_ids.items()):
        if subject not in new_ids:
            problems.append(Problem(config, subject, "published subject removed", IMMUTABLE))
            continue
        for version, old in sorted(ids.items()):
            new = new_ids[subject].get(version)
            if new is None:
                what = f"published v{version} (id {old}) removed"
                problems.append(Problem(config, subject, what, IMMUTABLE))
            elif new != old:
                what = f"v{version} id changed from {old} to {new}"
                problems.append(Problem(config, subject, what, IMMUTABLE))
    for old_file in sorted(baseline.glob("*/v*.avsc")):
        subject, name = old_file.parent.name, old_file.name
        file, current = f"{label}/{subject}/{name}", root / subject / name
        tag = name.removesuffix(".avsc")
        if not current.is_file():
            what = f"published {tag} removed"
            problems.append(Problem(file, subject, what, IMMUTABLE))
        elif _meaning(current) != _meaning(old_file):
            what = f"published {tag} changed (only its docs may change): add a new version"
            problems.append(Problem(file, subject, what, IMMUTABLE))
    return problems


def _declared_ids(root: Path) -> dict[str, dict[int, int]]:
    """Each subject's {version: id} in a folder's subjects.yaml, as far as it can be read."""
    try:
        config = yaml.safe_load((root / SUBJECTS_FILE).read_text()) or {}
        subjects: Mapping[str, Any] = config.get("subjects") or {}
        return {
            name: {int(k): int(v) for k, v in ((entry or {}).get("ids") or {}).items()}
            for name, entry in subjects.items()
        }
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return {}


def _meaning(path: Path) -> str:
    """A schema file without its docs or layout. Defaults, aliases, logical types and field
    order all stay: each changes what a reader gets, though the parsing canonical form drops
    several of them."""
    text = path.read_text()
    try:
        return json.dumps(_without_docs(json.loads(text)), sort_keys=True)
    except ValueError:
        return text


def _without_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_docs(v) for k, v in node.items() if k != "doc"}
    if isinstance(node, list):
        return [_without_docs(v) for v in node]
    return node
