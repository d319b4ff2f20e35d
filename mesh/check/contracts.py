"""The gRPC methods the contracts define, read from the descriptor set that `buf build` makes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2

from contracts.descriptors import http_rules
from mesh.check.model import Finding, MeshError


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
                if http_rules(method):
                    rest.add(path)
    return Contracts(frozenset(methods), frozenset(rest))
