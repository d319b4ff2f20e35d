"""Unknown JSON body fields: the Envoy Lua filter that refuses them before the transcoder.

The grpc_json_transcoder drops a body field its message does not define, and Envoy (1.40) has no
option to refuse it instead. `body_fields.lua` walks the body's keys against the request message
(proto names and JSON names, nested and repeated messages) and answers 400 naming each unknown
field. This module renders its tables from the same descriptors as the transcoder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from contracts.descriptors import Binding, Contracts

JSON = dict[str, Any]
FieldType = descriptor_pb2.FieldDescriptorProto
LUA = "envoy.filters.http.lua"
SOURCE = "body_fields"
SCRIPT = Path(__file__).with_name("body_fields.lua")
# Well-known types whose JSON takes any keys.
ANY_JSON = frozenset(
    {
        "google.protobuf.Any",
        "google.protobuf.ListValue",
        "google.protobuf.Struct",
        "google.protobuf.Value",
    }
)
# Well-known types printed as a JSON scalar (a string, number or bool), not as their fields.
SCALAR_JSON = frozenset(
    {
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.Timestamp",
        *(
            f"google.protobuf.{kind}Value"
            for kind in ("Bool", "Bytes", "Double", "Float", "Int32", "Int64", "String")
        ),
        "google.protobuf.UInt32Value",
        "google.protobuf.UInt64Value",
    }
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/{}*-]*$")


def body_root(contracts: Contracts, binding: Binding) -> tuple[str, list[str]] | None:
    """The message a binding's JSON body is, and the fields its URL path binds; None when the
    route takes no body or the body is not a JSON object of a message's fields."""
    if binding.body == "*":
        return binding.input_type, [f for f in binding.path_fields() if "." not in f]
    if not binding.body:
        return None
    message = contracts.messages[binding.input_type]
    field = next(f for f in message.field if f.name == binding.body)
    name = field.type_name.lstrip(".")
    if (
        field.type != FieldType.TYPE_MESSAGE
        or field.label == FieldType.LABEL_REPEATED
        or name in ANY_JSON | SCALAR_JSON
        or contracts.messages[name].options.map_entry
    ):
        return None  # a scalar, an array or a map: no message keys to check at the top
    return name, []


def per_route(contracts: Contracts, binding: Binding, route: str) -> JSON | None:
    """The route's LuaPerRoute: the shared script, told which root table to use."""
    if body_root(contracts, binding) is None:
        return None
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
        "name": SOURCE,
        "filter_context": {"root": route},
    }


def http_filter(contracts: Contracts, roots: dict[str, Binding]) -> JSON:
    """The Lua filter: no default script (routes without a body run nothing), one named script
    for the routes in `roots` (route name -> binding)."""
    return {
        "name": LUA,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "source_codes": {SOURCE: {"inline_string": script(contracts, roots)}},
        },
    }


# MESSAGES: message -> JSON key -> (proto name, kind, message walked into or None); ROOTS: route
# name -> (body message, {JSON key or proto name of a field the URL path binds: proto name}).
Messages = dict[str, dict[str, tuple[str, str, str | None]]]
Roots = dict[str, tuple[str, dict[str, str]]]


def script(contracts: Contracts, roots: dict[str, Binding]) -> str:
    """body_fields.lua with its tables for the routes in `roots` (route name -> binding)."""
    return lua_source(*tables(contracts, roots))


def tables(contracts: Contracts, roots: dict[str, Binding]) -> tuple[Messages, Roots]:
    """The walker's tables: every message a body can reach, and each route's root."""
    messages: Messages = {}
    routes: Roots = {}
    for route, binding in roots.items():
        root = body_root(contracts, binding)
        if root is None:
            continue
        message, bound = root
        _collect(contracts, message, messages)
        fields = {f.name: f for f in contracts.messages[message].field}
        routes[route] = (
            message,
            {key: name for name in bound for key in (fields[name].json_name or name, name)},
        )
    return messages, routes


def lua_source(messages: Messages, roots: Roots) -> str:
    """body_fields.lua with MESSAGES and ROOTS in front, as Lua table constructors."""

    def field(entry: tuple[str, str, str | None]) -> str:
        name, kind, child = entry
        return "{" + ", ".join(_lua(part) for part in (name, kind, child) if part) + "}"

    lines = ["-- Rendered by gateway/body_fields.py from the descriptor set.", "local MESSAGES = {"]
    for message, fields in sorted(messages.items()):
        lines.append(f"  [{_lua(message)}] = {{")
        lines += [f"    [{_lua(key)}] = {field(entry)}," for key, entry in sorted(fields.items())]
        lines.append("  },")
    lines += ["}", "local ROOTS = {"]
    for route, (message, bound) in sorted(roots.items()):
        path = ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in sorted(bound.items()))
        lines.append(f"  [{_lua(route)}] = {{message = {_lua(message)}, path = {{{path}}}}},")
    lines += ["}", "", SCRIPT.read_text()]
    return "\n".join(lines)


def _collect(contracts: Contracts, message: str, messages: Messages) -> None:
    """MESSAGES entries for `message` and every message its fields reach."""
    if message in messages:
        return
    fields: dict[str, tuple[str, str, str | None]] = {}
    messages[message] = fields  # before recursing: a recursive message ends here
    for field in contracts.messages[message].field:
        kind, child = _kind(contracts, field)
        if child is not None:
            _collect(contracts, child, messages)
        for key in (field.json_name or field.name, field.name):
            fields[key] = (field.name, kind, child)


def _kind(contracts: Contracts, field: FieldType) -> tuple[str, str | None]:
    """The walker's kind of a field ("s", "m", "k", "a") and the message it walks into."""
    if field.type != FieldType.TYPE_MESSAGE:
        return "s", None
    name = field.type_name.lstrip(".")
    if name in ANY_JSON:
        return "a", None
    if name in SCALAR_JSON:
        return "s", None
    entry = contracts.messages[name]
    if entry.options.map_entry:
        value = next(f for f in entry.field if f.name == "value")
        kind, child = _kind(contracts, value)
        return "k", child if kind == "m" else None
    return "m", name


def _lua(text: str) -> str:
    # Names from descriptors and route names only: nothing that needs escaping in Lua.
    if not _NAME.match(text):
        raise ValueError(f"unexpected character in {text!r}")
    return f'"{text}"'
