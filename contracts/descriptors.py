"""Read the contracts' descriptor set: services, HTTP bindings, messages and their comments.

The gateway's Envoy config and OpenAPI document, the breaking gate and mesh-check all read the
contracts through this one module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imported for their side effect: the option extensions must be registered before parsing.
from google.api import annotations_pb2, field_behavior_pb2
from google.api.http_pb2 import HttpRule
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2, status_pb2

from shop.api.v1 import field_rules_pb2

# The contracts' packages are `shop.<context>.<version>`; the context names the upstream.
PACKAGE = re.compile(r"^shop\.(?P<context>[a-z][a-z0-9_]*)\.v\d+\w*$")
# google.rpc.Status bodies carry BadRequest/ErrorInfo details only if the transcoder knows them.
ERROR_FILES = (status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR)
VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Binding:
    """One `google.api.http` rule of one RPC."""

    service: str  # full name, e.g. shop.users.v1.UserService
    method: str  # short name, e.g. CreateUser
    context: str  # upstream name, e.g. users
    verb: str  # lower case HTTP method
    path: str  # URL template, e.g. /v1/users/{user_id}
    body: str  # "", "*" or a field name
    input_type: str  # full message names without the leading dot
    output_type: str
    server_streaming: bool
    comment: str

    @property
    def full_method(self) -> str:
        return f"{self.service}.{self.method}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.method}"

    def path_fields(self) -> list[str]:
        """Field paths bound by the URL template, in order."""
        return re.findall(r"\{([^}=]+)", self.path)


@dataclass(frozen=True)
class Contracts:
    """The descriptor set with the error types added, and indexes over it."""

    files: descriptor_pb2.FileDescriptorSet
    messages: dict[str, descriptor_pb2.DescriptorProto]
    enums: dict[str, descriptor_pb2.EnumDescriptorProto]
    comments: dict[str, str]  # full name of message/field/enum/value -> leading comment
    services: tuple[str, ...]
    bindings: tuple[Binding, ...]

    def serialized(self) -> bytes:
        return self.files.SerializeToString()


def load(descriptor_set: Path) -> Contracts:
    """Parse a descriptor set made by `buf build` (imports included) and index it."""
    if not descriptor_set.is_file():
        raise FileNotFoundError(
            f"descriptor set {descriptor_set} not found: run `make descriptors` first"
        )
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(descriptor_set.read_bytes())
    add_error_types(files)
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
    comments: dict[str, str] = {}
    services: list[str] = []
    bindings: list[Binding] = []
    for file in files.file:
        located = _comments(file)
        prefix = f"{file.package}." if file.package else ""
        for index, message in enumerate(file.message_type):
            _index_message(message, prefix, (4, index), located, messages, enums, comments)
        for index, enum in enumerate(file.enum_type):
            _index_enum(enum, prefix, (5, index), located, enums, comments)
        match = PACKAGE.match(file.package)
        if match is None:
            continue
        for s_index, service in enumerate(file.service):
            name = prefix + service.name
            services.append(name)
            for m_index, method in enumerate(service.method):
                comment = located.get((6, s_index, 2, m_index), "")
                bindings.extend(_bindings(name, match["context"], method, comment))
    return Contracts(files, messages, enums, comments, tuple(sorted(services)), tuple(bindings))


def add_error_types(files: descriptor_pb2.FileDescriptorSet) -> None:
    """Append google/rpc files and their imports, dependencies first, unless already present."""
    present = {file.name for file in files.file}

    def add(descriptor: object) -> None:
        name: str = descriptor.name  # type: ignore[attr-defined]
        if name in present:
            return
        for dependency in descriptor.dependencies:  # type: ignore[attr-defined]
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(descriptor.serialized_pb)  # type: ignore[attr-defined]
        files.file.append(proto)
        present.add(name)

    for descriptor in ERROR_FILES:
        add(descriptor)


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {
        tuple(location.path): " ".join(location.leading_comments.split())
        for location in file.source_code_info.location
        if location.leading_comments
    }


def _index_message(
    message: descriptor_pb2.DescriptorProto,
    prefix: str,
    path: tuple[int, ...],
    located: dict[tuple[int, ...], str],
    messages: dict[str, descriptor_pb2.DescriptorProto],
    enums: dict[str, descriptor_pb2.EnumDescriptorProto],
    comments: dict[str, str],
) -> None:
    name = prefix + message.name
    messages[name] = message
    comments[name] = located.get(path, "")
    for index, field in enumerate(message.field):
        comments[f"{name}.{field.name}"] = located.get((*path, 2, index), "")
    for index, nested in enumerate(message.nested_type):
        _index_message(nested, f"{name}.", (*path, 3, index), located, messages, enums, comments)
    for index, enum in enumerate(message.enum_type):
        _index_enum(enum, f"{name}.", (*path, 4, index), located, enums, comments)


def _index_enum(
    enum: descriptor_pb2.EnumDescriptorProto,
    prefix: str,
    path: tuple[int, ...],
    located: dict[tuple[int, ...], str],
    enums: dict[str, descriptor_pb2.EnumDescriptorProto],
    comments: dict[str, str],
) -> None:
    name = prefix + enum.name
    enums[name] = enum
    comments[name] = located.get(path, "")


def http_rules(method: descriptor_pb2.MethodDescriptorProto) -> list[HttpRule]:
    """A method's `google.api.http` rule and its additional bindings; [] when it has none."""
    http: Any = annotations_pb2.http  # typed as a plain FieldDescriptor in the stubs
    if not method.options.HasExtension(http):
        return []
    rule: HttpRule = method.options.Extensions[http]
    return [rule, *rule.additional_bindings]


def verb_and_path(rule: HttpRule) -> tuple[str, str] | None:
    """The lower-case HTTP verb and the path template of one rule; None when it sets neither."""
    kind = rule.WhichOneof("pattern")
    if kind is None:
        return None
    if kind == "custom":
        return rule.custom.kind.lower(), rule.custom.path
    return kind, getattr(rule, kind)


def _bindings(
    service: str, context: str, method: descriptor_pb2.MethodDescriptorProto, comment: str
) -> Iterator[Binding]:
    for rule in http_rules(method):
        pattern = verb_and_path(rule)
        if pattern is None:
            continue
        verb, path = pattern
        yield Binding(
            service=service,
            method=method.name,
            context=context,
            verb=verb,
            path=path,
            body=rule.body,
            input_type=method.input_type.lstrip("."),
            output_type=method.output_type.lstrip("."),
            server_streaming=method.server_streaming,
            comment=comment,
        )


def field_behaviors(field: descriptor_pb2.FieldDescriptorProto) -> set[int]:
    """The google.api.field_behavior values set on a field."""
    behavior: Any = field_behavior_pb2.field_behavior
    return set(field.options.Extensions[behavior])


def field_rules(field: descriptor_pb2.FieldDescriptorProto) -> field_rules_pb2.FieldRules:
    """The shop.api.v1.rules bounds set on a field (an empty FieldRules if none)."""
    rules: Any = field_rules_pb2.rules
    value: field_rules_pb2.FieldRules = field.options.Extensions[rules]
    return value
