"""OpenAPI 3.1 for the REST gateway, generated from the same descriptors as the Envoy config.

Schemas follow the proto3 JSON mapping the transcoder prints: JSON names, 64-bit integers as
strings, enums by name, Timestamps as RFC 3339 strings.
"""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

from contracts.descriptors import Binding, Contracts, field_behaviors, field_rules
from gateway import policy
from shop.api.v1 import field_rules_pb2

JSON = dict[str, Any]
FieldType = descriptor_pb2.FieldDescriptorProto
STATUS = "google.rpc.Status"
INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
SCALARS: dict[int, JSON] = {
    FieldType.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldType.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldType.TYPE_INT64: INT64,
    FieldType.TYPE_SFIXED64: INT64,
    FieldType.TYPE_SINT64: INT64,
    FieldType.TYPE_UINT64: UINT64,
    FieldType.TYPE_FIXED64: UINT64,
    FieldType.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldType.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldType.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldType.TYPE_UINT32: {
        "type": "integer",
        "format": "int64",
        "minimum": 0,
        "maximum": 4294967295,
    },
    FieldType.TYPE_FIXED32: {
        "type": "integer",
        "format": "int64",
        "minimum": 0,
        "maximum": 4294967295,
    },
    FieldType.TYPE_BOOL: {"type": "boolean"},
    FieldType.TYPE_STRING: {"type": "string"},
    FieldType.TYPE_BYTES: {"type": "string", "format": "byte"},
}
# Well-known types with their own JSON form.
WELL_KNOWN: dict[str, JSON] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.FieldMask": {"type": "string"},
}
ERROR_STATUSES = {
    "400": "The request is invalid; `details` names the bad fields (google.rpc.BadRequest).",
    "404": "The resource or the route does not exist.",
    "429": "Rate limited; retry after the `retry-after` header's seconds.",
    "503": "The service behind this route is unavailable.",
}
PROTECTED_STATUSES = {
    "401": "A bearer token is missing or invalid.",
    "403": "The token's subject may not act on this resource.",
}
# The gateway refuses paths with an encoded slash, backslash or NUL, and paths that normalize
# elsewhere (render.py: path_with_escaped_slashes_action, normalize_path): a path parameter can
# hold neither, nor be a `.` or `..` segment.
PATH_SEGMENT = r"^(?!\.{1,2}$)[^/\\\x00]+$"
# proto3 cannot tell absent from empty, and the services strip spaces: a required string must
# have a non-space character.
NOT_BLANK = r"\S"
BODY_NOTE = (
    "Fields by their JSON names; proto field names (`user_id`) are accepted too. A field the"
    " message does not define, or one the URL path gives, is refused: 400, the field named."
)
STREAMING_NOTE = (
    " Streams newline-delimited JSON: one message per line, sent as each change happens;"
    " the stream ends once the order is final."
)


def document(contracts: Contracts) -> JSON:
    """The OpenAPI 3.1 document for every bound RPC, plus the gateway's own routes."""
    builder = _Builder(contracts)
    paths: dict[str, JSON] = {
        "/healthz": {
            "get": _plain(
                "healthz",
                "Gateway liveness.",
                {
                    "type": "object",
                    "properties": {"status": {"type": "string"}},
                    "required": ["status"],
                },
            )
        },
        "/openapi.json": {"get": _plain("openapi", "This document.", {"type": "object"})},
    }
    seen: set[str] = set()
    served = policy.served(contracts.bindings)
    for binding in served:
        operation = builder.operation(binding)
        if binding.full_method in seen:  # an additional binding of the same RPC
            operation["operationId"] += f"_{binding.verb}_{len(seen)}"
        elif not binding.server_streaming:  # a stream's body is not one JSON document
            links = _links(contracts, binding, served)
            if links:
                operation["responses"]["200"]["links"] = links
        seen.add(binding.full_method)
        paths.setdefault(binding.path, {})[binding.verb] = operation
    builder.schema(STATUS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Shop REST API",
            "version": "1.0.0",
            "description": "REST/JSON over the shop's gRPC services, transcoded by Envoy.",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _links(contracts: Contracts, source: Binding, targets: tuple[Binding, ...]) -> JSON:
    """OpenAPI links from `source`'s 200 response: each `<thing>_id` it returns feeds the
    operations whose only path parameter is that field (`POST /v1/orders` -> `order.orderId` ->
    `GET /v1/orders/{order_id}`). Derived from the descriptors, so a new RPC gets its links.

    Not to streams (a watch lasts until the order is final), and not across versions of one
    context (a v2 order is not a v1 resource)."""
    links: JSON = {}
    for pointer, name in _ids(contracts, source.output_type, "", depth=2):
        for target in targets:
            first = next(b for b in targets if b.full_method == target.full_method)
            if (
                target is not first
                or target.full_method == source.full_method
                or target.server_streaming
                or target.path_fields() != [name]
                or (target.context == source.context and _package(target) != _package(source))
            ):
                continue
            key = f"{target.method}_{target.service.split('.')[-2]}_{name}"
            links.setdefault(
                key,
                {
                    "operationId": target.full_method,
                    "parameters": {name: f"$response.body#{pointer}"},
                    "description": f"`{pointer}` is the `{name}` of {target.method}.",
                },
            )
    return dict(sorted(links.items()))


def _ids(contracts: Contracts, message: str, pointer: str, depth: int) -> list[tuple[str, str]]:
    """(JSON pointer, proto name) of the string `*_id` fields of a message, through singular
    messages and the first element of repeated ones, `depth` messages deep."""
    found = []
    nested = []
    for field in contracts.messages[message].field:
        path = f"{pointer}/{field.json_name or field.name}"
        if field.label == FieldType.LABEL_REPEATED:
            path += "/0"
        if field.type == FieldType.TYPE_STRING and field.name.endswith("_id"):
            found.append((path, field.name))
        elif field.type == FieldType.TYPE_MESSAGE and depth > 0:
            child = field.type_name.lstrip(".")
            if child not in WELL_KNOWN and not contracts.messages[child].options.map_entry:
                nested.append((child, path))
    for child, path in nested:
        found += _ids(contracts, child, path, depth - 1)
    return found


def _package(binding: Binding) -> str:
    return binding.service.rsplit(".", 1)[0]


def _non_empty(schema: JSON) -> JSON:
    if schema.get("type") == "array":
        return {**schema, "minItems": 1}
    if schema.get("type") == "string" and "format" not in schema:
        return {"minLength": 1, "pattern": NOT_BLANK, **schema}
    return schema


def _with_rules(schema: JSON, rules: field_rules_pb2.FieldRules) -> JSON:
    """`schema` narrowed by the field's shop.api.v1.rules (bounds a service enforces)."""
    narrowed = dict(schema)
    if rules.HasField("minimum"):
        narrowed["minimum"] = rules.minimum
    if rules.HasField("maximum"):
        narrowed["maximum"] = rules.maximum
    if rules.HasField("max_length"):
        narrowed["maxLength"] = rules.max_length
    if rules.format:
        narrowed["format"] = rules.format
    if rules.pattern:
        narrowed["pattern"] = rules.pattern
    return narrowed


def _plain(name: str, summary: str, schema: JSON) -> JSON:
    return {
        "operationId": name,
        "summary": summary,
        "security": [],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": schema}}}
        },
    }


def _error(description: str) -> JSON:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{STATUS}"}}},
    }


class _Builder:
    def __init__(self, contracts: Contracts) -> None:
        self.contracts = contracts
        self.schemas: dict[str, JSON] = {}

    def operation(self, binding: Binding) -> JSON:
        request = binding.input_type
        path_fields = binding.path_fields()
        parameters = [self._path_parameter(request, name) for name in path_fields]
        operation: JSON = {
            "operationId": binding.full_method,
            "summary": f"{binding.service.rsplit('.', 1)[-1]}.{binding.method}",
            "description": binding.comment + (STREAMING_NOTE if binding.server_streaming else ""),
            "tags": [binding.service],
        }
        message = self.contracts.messages[request]
        if binding.body == "*":
            operation["requestBody"] = {
                "required": True,
                "description": BODY_NOTE,
                "content": {
                    "application/json": {"schema": self._object(request, exclude=set(path_fields))}
                },
            }
        else:
            if binding.body:
                field = next(f for f in message.field if f.name == binding.body)
                operation["requestBody"] = {
                    "required": True,
                    "description": BODY_NOTE,
                    "content": {"application/json": {"schema": self._field(field)}},
                }
            excluded = {*path_fields, binding.body}
            parameters += [
                self._query_parameter(request, field)
                for field in message.field
                if field.name not in excluded and self._is_query_field(field)
            ]
        if parameters:
            operation["parameters"] = parameters
        responses: JSON = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": self.ref(binding.output_type)}},
            }
        }
        statuses = dict(ERROR_STATUSES)
        if policy.is_public(binding):
            operation["security"] = []
        else:
            operation["security"] = [{"bearer": []}]
            statuses.update(PROTECTED_STATUSES)
        responses.update({code: _error(text) for code, text in sorted(statuses.items())})
        responses["default"] = _error("Any other error, as a google.rpc.Status.")
        operation["responses"] = responses
        return operation

    def _path_parameter(self, message_name: str, field_path: str) -> JSON:
        field = self._resolve(message_name, field_path)
        schema = dict(self._field(field))
        if schema.get("type") == "string":
            schema.setdefault("minLength", 1)
            schema.setdefault("pattern", PATH_SEGMENT)
        return {
            "name": field_path,
            "in": "path",
            "required": True,
            "description": self._comment(message_name, field_path),
            "schema": schema,
        }

    def _is_query_field(self, field: descriptor_pb2.FieldDescriptorProto) -> bool:
        # Only scalars and enums map to query parameters; nested messages would need dotted names.
        return field.type != FieldType.TYPE_MESSAGE or field.type_name.lstrip(".") in WELL_KNOWN

    def _query_parameter(
        self, message_name: str, field: descriptor_pb2.FieldDescriptorProto
    ) -> JSON:
        parameter: JSON = {
            "name": field.json_name or field.name,
            "in": "query",
            "required": field_behavior_pb2.REQUIRED in field_behaviors(field),
            "description": self.contracts.comments.get(f"{message_name}.{field.name}", ""),
            "schema": self._field(field),
        }
        if field.label == FieldType.LABEL_REPEATED:
            parameter.update(style="form", explode=True)
        return parameter

    def _resolve(self, message_name: str, field_path: str) -> descriptor_pb2.FieldDescriptorProto:
        name = message_name
        field = None
        for part in field_path.split("."):
            message = self.contracts.messages[name]
            field = next((f for f in message.field if f.name == part), None)
            if field is None:
                raise ValueError(
                    f"{message_name} has no field {field_path!r} (from a URL template)"
                )
            name = field.type_name.lstrip(".")
        assert field is not None
        return field

    def _comment(self, message_name: str, field_path: str) -> str:
        owner, _, last = f"{message_name}.{field_path}".rpartition(".")
        if "." in field_path:
            owner = self._resolve(message_name, field_path.rsplit(".", 1)[0]).type_name.lstrip(".")
        return self.contracts.comments.get(f"{owner}.{last}", "")

    def ref(self, message_name: str) -> JSON:
        if message_name in WELL_KNOWN:
            return dict(WELL_KNOWN[message_name])
        self.schema(message_name)
        return {"$ref": f"#/components/schemas/{message_name}"}

    def schema(self, message_name: str) -> None:
        if message_name in self.schemas:
            return
        self.schemas[message_name] = {}  # placeholder breaks recursion
        self.schemas[message_name] = self._object(message_name, exclude=set())

    def _object(self, message_name: str, exclude: set[str]) -> JSON:
        message = self.contracts.messages[message_name]
        properties: JSON = {}
        required: list[str] = []
        for field in message.field:
            if field.name in exclude:
                continue
            name = field.json_name or field.name
            schema = self._field(field)
            behaviors = field_behaviors(field)
            description = self.contracts.comments.get(f"{message_name}.{field.name}", "")
            if description:
                schema = {**schema, "description": description}
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                schema = {**schema, "readOnly": True}
            if field_behavior_pb2.REQUIRED in behaviors:
                required.append(name)
                schema = _non_empty(schema)
            properties[name] = schema
        # The gateway refuses a field the message does not define (gateway/body_fields.py), and
        # the transcoder prints none.
        result: JSON = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            result["required"] = required
        comment = self.contracts.comments.get(message_name, "")
        if comment:
            result["description"] = comment
        return result

    def _field(self, field: descriptor_pb2.FieldDescriptorProto) -> JSON:
        if field.type == FieldType.TYPE_MESSAGE:
            entry = self.contracts.messages[field.type_name.lstrip(".")]
            if entry.options.map_entry:
                value = next(f for f in entry.field if f.name == "value")
                return {"type": "object", "additionalProperties": self._field(value)}
            single = self.ref(field.type_name.lstrip("."))
        elif field.type == FieldType.TYPE_ENUM:
            enum = self.contracts.enums[field.type_name.lstrip(".")]
            single = {"type": "string", "enum": [value.name for value in enum.value]}
            comment = self.contracts.comments.get(field.type_name.lstrip("."), "")
            if comment:
                single["description"] = comment
        else:
            single = dict(SCALARS[field.type])
        rules = field_rules(field)
        single = _with_rules(single, rules)
        if field.label == FieldType.LABEL_REPEATED:
            array: JSON = {"type": "array", "items": single}
            if rules.HasField("max_items"):
                array["maxItems"] = rules.max_items
            return array
        return single
