"""The gRPC methods the contracts define, read from the descriptor set that `buf build` makes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from mesh.check.model import Finding, MeshError

# The MethodOptions extension that puts an RPC on REST. Importing its module registers it, so
# parsing the descriptor set keeps it as a known field rather than unknown bytes.
HTTP_RULE = annotations_pb2.http.full_name


@dataclass(frozen=True)
class Contracts:
    """Method paths (`/shop.payments.v1.PaymentService/ChargePayment`) and those REST exposes."""

    methods: frozenset[str]
    rest_methods: frozenset[str]


def load_contracts(descriptor_set: Path) -> Contracts:
    try:
        data = descriptor_set.read_bytes()
    except OSError as error:
        raise MeshError(
            [
                Finding(
                    str(descriptor_set),
                    "FileDescriptorSet",
                    "contracts",
                    "-",
                    f"cannot read it ({error.strerror}); run `make descriptors`",
                )
            ]
        ) from error
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    methods, rest = set(), set()
    for file in files:
        for service in file.service:
            for method in service.method:
                path = f"/{file.package}.{service.name}/{method.name}"
                methods.add(path)
                if any(f.full_name == HTTP_RULE for f, _ in method.options.ListFields()):
                    rest.add(path)
    return Contracts(frozenset(methods), frozenset(rest))
