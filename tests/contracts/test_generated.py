"""Every generated module imports, and every message survives the binary and JSON round trips."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import cast

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from tools.protos import GEN_PYTHON, contract_files

MODULES = sorted(
    ".".join(path.relative_to(GEN_PYTHON).with_suffix("").parts)
    for path in GEN_PYTHON.rglob("*.py")
    if "__pycache__" not in path.parts and path.stem != "__init__"
)
MESSAGE_MODULES = [name for name in MODULES if name.endswith("_pb2")]

# One value per scalar type, chosen to exercise sign, width and encoding.
SCALARS: dict[int, object] = {
    FieldDescriptor.TYPE_DOUBLE: 0.5,
    FieldDescriptor.TYPE_FLOAT: 0.25,
    FieldDescriptor.TYPE_INT64: -(1 << 40),
    FieldDescriptor.TYPE_SINT64: -(1 << 40),
    FieldDescriptor.TYPE_SFIXED64: -(1 << 40),
    FieldDescriptor.TYPE_UINT64: 1 << 40,
    FieldDescriptor.TYPE_FIXED64: 1 << 40,
    FieldDescriptor.TYPE_INT32: -7,
    FieldDescriptor.TYPE_SINT32: -7,
    FieldDescriptor.TYPE_SFIXED32: -7,
    FieldDescriptor.TYPE_UINT32: 7,
    FieldDescriptor.TYPE_FIXED32: 7,
    FieldDescriptor.TYPE_BOOL: True,
    FieldDescriptor.TYPE_STRING: "Zoë's order #1",
    FieldDescriptor.TYPE_BYTES: b"\x00\xff",
}

# Well-known types whose JSON form only accepts values in a range.
WELL_KNOWN: dict[str, Callable[[Message], None]] = {
    "google.protobuf.Timestamp": lambda m: m.FromJsonString("2024-05-06T07:08:09.123Z"),  # type: ignore[attr-defined]
    "google.protobuf.Duration": lambda m: m.FromJsonString("1.5s"),  # type: ignore[attr-defined]
}


def scalar(field: FieldDescriptor) -> object:
    """A non-default value for a scalar or enum field."""
    if field.enum_type is not None:
        return field.enum_type.values[-1].number
    return SCALARS[field.type]


def fill(message: Message, depth: int = 0) -> Message:
    """Set every field of `message` (one per oneof, nested messages to a bounded depth)."""
    # The stubs type DESCRIPTOR as a union with the C implementation's class.
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    if descriptor.full_name in WELL_KNOWN:
        WELL_KNOWN[descriptor.full_name](message)
        return message
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and message.WhichOneof(oneof.name) is not None:
            continue
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields
            if value_field.message_type is None:
                value[scalar(key_field)] = scalar(value_field)
            elif depth < 3:
                fill(value[scalar(key_field)], depth + 1)
        elif field.message_type is not None:
            if depth < 3:
                fill(value.add() if field.is_repeated else value, depth + 1)
        elif field.is_repeated:
            value.append(scalar(field))
        else:
            setattr(message, field.name, scalar(field))
    return message


def messages() -> list[tuple[str, Descriptor]]:
    """Every message type (nested ones included) declared in the generated modules."""
    found = []

    def walk(descriptor: Descriptor) -> None:
        if not descriptor.GetOptions().map_entry:
            found.append((descriptor.full_name, descriptor))
        for nested in descriptor.nested_types:
            walk(nested)

    for name in MESSAGE_MODULES:
        module: ModuleType = importlib.import_module(name)
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            walk(descriptor)
    return found


MESSAGES = messages()


def test_every_contract_has_generated_modules() -> None:
    expected = {
        f"{file.removesuffix('.proto').replace('/', '.')}{suffix}"
        for file in contract_files()
        for suffix in ("_pb2", "_pb2_grpc")
    }
    assert expected <= set(MODULES)
    assert {name.rsplit(".", 1)[0] for name in MODULES} == {
        name.rsplit(".", 1)[0] for name in expected
    }


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    module = importlib.import_module(name)

    assert "DO NOT EDIT" in Path(str(module.__file__)).read_text()


@pytest.mark.parametrize("descriptor", [d for _, d in MESSAGES], ids=[n for n, _ in MESSAGES])
def test_message_round_trips(descriptor: Descriptor) -> None:
    cls = GetMessageClass(descriptor)
    message = fill(cls())
    assert message.ListFields() or not descriptor.fields, "filler left the message empty"

    from_binary = cls.FromString(message.SerializeToString(deterministic=True))
    from_json = json_format.Parse(json_format.MessageToJson(message), cls())

    assert from_binary == message
    assert from_json == message
