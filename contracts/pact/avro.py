"""Avro events as V4 asynchronous-message pacts: the record as JSON, the reader schema alongside.

On the wire an event is Avro binary in Confluent's wire format (byte 0, the writer schema's id,
the record); a pact cannot compare that by field, so a message's contents are the record as
JSON (timestamps as RFC 3339 strings) and its metadata carries the subject and the consumer's
reader schema, the schema it decodes with.

- Consumer side: `expect` records an interaction with matchers for the fields the consumer
  reads; `wire_payload` turns the message back into the bytes a producer would send, so the
  consumer's real decoder and handler run on it.
- Provider side: `EventProvider` is the message producer for pact-python's Verifier. Each
  interaction's provider state makes the producer write its event through its real outbox; the
  producer reads the committed row and decodes it with the consumer's reader schema from the
  pact. A field the reader needs that the writer no longer writes fails the decoding; a field
  the consumer reads that comes back empty or null fails Pact's comparison of the contents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
from pact import Pact

from contracts.pact import files
from contracts.schemas import (
    DecodeError,
    Registry,
    SchemaVersion,
    decode,
    encode,
    schema_id,
)
from services.runtime.outbox import StoredEvent

JSON_TYPE = "application/json"
SUBJECT = "avro-subject"
READER_VERSION = "avro-reader-version"  # the subject's version the consumer reads with
READER_ID = "avro-reader-id"  # its registry id
READER_SCHEMA = "avro-reader-schema"  # its .avsc as JSON, docs left out: what to decode with
DECODE = "avro-decode"  # "ok" when the reader schema could read the producer's bytes
DECODED = "ok"
_TIMESTAMPS = {"timestamp-millis", "timestamp-micros"}
Reply = tuple[bytes, dict[str, Any]]


def label(reader: SchemaVersion) -> str:
    return f"{reader.subject} v{reader.version} (id {reader.schema_id})"


def without_docs(schema: Any) -> Any:
    """A schema without its `doc` strings, which do not take part in decoding."""
    if isinstance(schema, Mapping):
        return {k: without_docs(v) for k, v in schema.items() if k != "doc"}
    if isinstance(schema, list):
        return [without_docs(v) for v in schema]
    return schema


def metadata(reader: SchemaVersion) -> dict[str, Any]:
    """The metadata of a message the consumer reads with `reader`."""
    return {
        "contentType": JSON_TYPE,
        SUBJECT: reader.subject,
        READER_VERSION: reader.version,
        READER_ID: reader.schema_id,
        READER_SCHEMA: without_docs(reader.definition),
        DECODE: DECODED,
    }


def expect(
    pact: Pact,
    description: str,
    state: str,
    reader: SchemaVersion,
    contents: Mapping[str, Any],
) -> None:
    """Record that the consumer reads `contents` (matchers for the fields it uses) from the
    events of `reader`'s subject that the provider writes in `state`."""
    (
        pact.upon_receiving(description, "Async")
        .given(state)
        .with_body(dict(contents), JSON_TYPE)
        .with_metadata(metadata(reader))
    )


# Consumer side -----------------------------------------------------------------------------


def _from_json(schema: Any, value: Any) -> Any:
    """`value` (JSON, possibly missing fields) as a record `schema` can write; a field the
    message leaves out, which the consumer does not read, gets its default or a zero value."""
    if isinstance(schema, list):  # a union: only ["null", T] occurs in these schemas
        if value is None:
            return None
        return _from_json(next(t for t in schema if t != "null"), value)
    if isinstance(schema, str):
        return _zero(schema) if value is None else value
    kind = schema["type"]
    if kind == "record":
        given = value or {}
        record = {}
        for f in schema["fields"]:
            if f["name"] in given:
                record[f["name"]] = _from_json(f["type"], given[f["name"]])
            elif "default" in f:
                record[f["name"]] = f["default"]
            else:
                record[f["name"]] = _from_json(f["type"], None)
        return record
    if kind == "array":
        return [_from_json(schema["items"], item) for item in value or []]
    if schema.get("logicalType") in _TIMESTAMPS:
        return datetime.fromisoformat(value) if isinstance(value, str) else 0
    return _from_json(kind, value)


def _zero(kind: str) -> Any:
    zeros: dict[str, Any] = {"string": "", "int": 0, "long": 0, "boolean": False, "null": None}
    if kind not in zeros:
        raise TypeError(f"no zero value for Avro type {kind!r}: give the field in the message")
    return zeros[kind]


def wire_payload(reader: SchemaVersion, contents: Mapping[str, Any]) -> bytes:
    """The message as a producer writing `reader`'s version would send it (wire format)."""
    return encode(reader, _from_json(dict(reader.definition), dict(contents)))


# Provider side -----------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A decoded record as JSON: timestamps in RFC 3339 (UTC, `Z`)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def reader_of(interaction: Mapping[str, Any], pact: Path) -> SchemaVersion:
    """The consumer's reader schema, as the pact carries it (not as the provider's tree has it)."""
    meta = interaction.get("metadata") or {}
    definition = meta[READER_SCHEMA]
    return SchemaVersion(
        str(meta[SUBJECT]),
        int(meta[READER_VERSION]),
        int(meta[READER_ID]),
        pact,
        definition,
        fastavro.parse_schema(definition),
    )


class EventProvider:
    """The Verifier's message producer: the committed event, read with the consumer's schema.

    `events(subject)` returns the producer's committed outbox rows of a subject, oldest first;
    the provider state of each interaction has just made the producer write one.
    """

    def __init__(
        self,
        pacts: Sequence[Path],
        registry: Registry,
        events: Callable[[str], Sequence[StoredEvent]],
    ) -> None:
        self._interactions = {
            str(i["description"]): (i, path)
            for path in pacts
            for i in files.load(path).get("interactions", [])
        }
        self._registry = registry
        self._events = events

    def __call__(self, description: str, request: Mapping[str, Any]) -> Reply:
        interaction, path = self._interactions[description]
        reader = reader_of(interaction, path)
        written = self._events(reader.subject)
        if not written:
            raise LookupError(f"the producer committed no {reader.subject} event")
        payload = written[-1].payload
        meta = metadata(reader)
        try:
            record = decode(self._registry, payload, reader)
        except DecodeError as error:
            # Say why in the metadata, and show what was written (read with the writer's own
            # schema), so the report names the field without anyone opening the pact.
            meta[DECODE] = f"FAILED: {label(reader)} cannot read the event: {error}"
            record = self._as_written(payload)
        return json.dumps(to_json(record), sort_keys=True).encode(), meta

    def _as_written(self, payload: bytes) -> dict[str, Any]:
        try:
            return decode(self._registry, payload, self._registry.by_id(schema_id(payload)))
        except DecodeError:
            return {}
